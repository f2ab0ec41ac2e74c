"""manifest.json of one target's folder: written by the build, read by ``qconvert verify`` (without torch).

One pydantic model, ``Manifest``, is both: the build constructs it and dumps it, ``read_manifest``
validates a file into it, and ``schemas/manifest.schema.json`` is generated from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SerializeAsAny, ValidationError, model_validator

from qconvert.errors import BadInputError
from qconvert.targets.base import Artifact, ArtifactDetails
from qconvert.verify.numbers import JsonFloat
from qconvert.verify.report_schema import Comparison, OutputEntry

__all__ = ["ArtifactRecord", "Manifest", "ManifestParity", "ManifestTolerance", "QuantizationEntry", "manifest_json_schema_text",
           "read_artifact", "read_manifest", "write_manifest"]

_FIX = "give a target's folder of a build, e.g. OUT/onnx"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactRecord(_Strict):
    """What ``emit`` wrote (``qconvert.targets.base.Artifact``), paths relative to the manifest's folder."""

    target: str
    directory: str = Field(".", description="Always '.': the folder holding this manifest.")
    main_file: str = Field(..., description="Main artifact file, relative to the folder.")
    input_names: list[str]
    output_names: list[str]
    runnable: bool = Field(..., description="Whether the runtime could execute it where it was built.")
    notes: list[str]
    details: SerializeAsAny[ArtifactDetails] = Field(..., description="The plugin's own typed record of the artifact "
                                                     "(its Target.Details), read back by its run and latency.")
    runs_in: str = Field("", description="What executed it where it was built, when not the target's own runtime.")
    tolerance_lsb: JsonFloat | None = Field(None, description="This artifact's parity tolerance where it differs from the target's.")

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: object) -> object:
        """Manifests written before the details were typed call them ``extra``."""
        if isinstance(data, dict) and "extra" in data and "details" not in data:
            return {("details" if k == "extra" else k): v for k, v in data.items()}
        return data

    @classmethod
    def of(cls, a: Artifact) -> ArtifactRecord:
        return cls(target=a.target, main_file=a.main_file, input_names=list(a.input_names), output_names=list(a.output_names),
                   runnable=a.runnable, notes=list(a.notes), details=a.details, runs_in=a.runs_in, tolerance_lsb=a.tolerance_lsb)

    def artifact(self, directory: Path, details: type[ArtifactDetails] = ArtifactDetails) -> Artifact:
        """The ``Artifact`` in ``directory`` (where this manifest lies), its details validated as ``details``
        (the target's ``Details``).

        Raises:
            BadInputError: the details do not fit the target's model (a manifest of another version).
        """
        try:
            typed = details.model_validate(self.details.model_dump())
        except ValidationError as e:
            raise BadInputError(f"{directory}/manifest.json: artifact.details do not fit target '{self.target}' "
                                f"({_first_error(e)}); build again with this version") from e
        return Artifact(target=self.target, directory=directory, main_file=self.main_file, input_names=tuple(self.input_names),
                        output_names=tuple(self.output_names), runnable=self.runnable, notes=tuple(self.notes), details=typed,
                        runs_in=self.runs_in, tolerance_lsb=self.tolerance_lsb)


class ManifestTolerance(_Strict):
    max_lsb: JsonFloat = Field(..., description="Artifact-vs-simulation tolerance, output steps.")
    output_scale: JsonFloat | None = Field(..., description="Scale of the first output's dequantize; null for a float output.")
    output_steps: list[JsonFloat | None] = Field(..., description="Per output, the step parity is counted in.")


class ManifestParity(_Strict):
    """How the artifact compared where it was built (null where it did not run)."""

    vs_simulation: Comparison | None
    vs_float: Comparison | None
    accuracy: JsonFloat | None
    simulation_accuracy: JsonFloat | None
    outputs: list[OutputEntry] | None


class QuantizationEntry(_Strict):
    """One quantized tensor (activation or weight) and its grid.

    Field for field ``qconvert.core.quantize.QParamSummary``, which it is validated from; it is
    declared again here because a manifest is read on a board without torch, and that module
    imports torch. ``tests/test_report.py`` keeps the two field lists equal.
    """

    key: str
    role: str
    module: str
    bits: int
    mode: str
    granularity: str
    power_of_two: bool
    method: str
    scale_min: JsonFloat
    scale_max: JsonFloat
    zero_point: int | None


class Manifest(_Strict):
    """manifest.json of one target's folder."""

    qconvert_version: str
    torch_version: str
    target: str
    runtime: str = Field(..., description="Runtime and version the artifact was verified with.")
    recipe: dict[str, JsonValue] = Field(..., description="The effective recipe this target quantized with (after optimize_for).")
    recipe_hash: str = Field(..., pattern="^[0-9a-f]{64}$",
                             description="sha256 of that effective recipe (report.json's targets.<name>.recipe_hash).")
    recipe_file_sha256: str | None = Field(..., description="sha256 of the recipe file's bytes, as committed.")
    target_options: dict[str, JsonValue] = Field(..., description="The target's options as validated.")
    artifact: ArtifactRecord
    tolerance: ManifestTolerance
    model_outputs: list[str]
    parity: ManifestParity
    quantization: list[QuantizationEntry]


def write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / "manifest.json").write_text(manifest.model_dump_json(indent=1) + "\n")


def read_manifest(directory: Path) -> Manifest:
    """``directory/manifest.json`` as a ``Manifest``.

    Raises:
        BadInputError: no such file, or not a qconvert manifest (one line naming the first problem).
    """
    path = directory / "manifest.json"
    if not path.exists():
        raise BadInputError(f"{directory}: no manifest.json; {_FIX}")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise BadInputError(f"{path}: not a qconvert manifest ({_first_error(e)}); {_FIX}") from e


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def read_artifact(directory: Path, details: type[ArtifactDetails] = ArtifactDetails) -> Artifact:
    """The artifact a build wrote into ``directory``, from its manifest.json (details validated as ``details``)."""
    return read_manifest(directory).artifact.artifact(directory, details)


def manifest_json_schema_text() -> str:
    """The exact text committed as schemas/manifest.schema.json."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://qconvert.dev/schemas/manifest.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
