"""The ``qconvert`` command line: the only place that prints or picks exit codes.

Heavy imports (torch, runtimes) happen inside commands so ``qconvert --help``
stays fast and imports no runtime.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from qconvert.errors import EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_TARGET_UNAVAILABLE, BadInputError, GateFailedError, QConvertError
from qconvert.version import __version__

if TYPE_CHECKING:
    from qconvert.progress import TerminalProgress

__all__ = ["main"]


def _shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise BadInputError(f"--input-shape '{value}': expected comma-separated integers like 1,3,32,32") from None
    if not dims or any(d <= 0 for d in dims):
        raise BadInputError(f"--input-shape '{value}': dimensions must be positive")
    return dims


def _widths(value: str | None) -> tuple[int, ...] | None:
    """``--compare-precision 8,16``: two or more activation widths, 2-16 bits."""
    if value is None:
        return None
    try:
        widths = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise BadInputError(f"--compare-precision '{value}': expected comma-separated bit widths like 8,16") from None
    if len(widths) < 2 or any(not 2 <= b <= 16 for b in widths):
        raise BadInputError(f"--compare-precision '{value}': give two or more activation widths of 2-16 bits, e.g. 8,16")
    return widths


def _progress(quiet: bool, stream: IO[str] | None = None) -> TerminalProgress:
    """Step messages and progress bars on stderr (``stream``: the terminal kept by ``qconvert.quiet.captured``)
    when a person watches; silent with --quiet, in CI or a pipe."""
    from qconvert.progress import TerminalProgress, interactive

    stream = stream if stream is not None else sys.stderr
    return TerminalProgress(not quiet and interactive(stream), stream)


def _run(fn: Callable[[], Any]) -> Any:
    """Map qconvert errors to one line and an exit code; hide tracebacks unless QCONVERT_DEBUG is set."""
    try:
        return fn()
    except GateFailedError as e:
        for line in e.failures:
            click.echo(f"gate failed: {line}", err=True)
        sys.exit(EXIT_GATE_FAILED)
    except QConvertError as e:
        if os.environ.get("QCONVERT_DEBUG"):
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except Exception as e:
        if os.environ.get("QCONVERT_DEBUG"):
            raise
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in ("torch", "torchao"):
            # a board install (pip install qconvert-onnx) has no torch: only 'qconvert verify' works there
            click.echo(f"error: {e.name} is not installed; building needs it: pip install 'qconvert[build]' (or 'qconvert[onnx]', ...)",
                       err=True)
            sys.exit(EXIT_TARGET_UNAVAILABLE)
        msg = str(e).strip().splitlines()
        click.echo(f"internal error: {type(e).__name__}: {msg[0] if msg else ''} (set QCONVERT_DEBUG=1 for the traceback, and please "
                   "report it)", err=True)
        sys.exit(EXIT_INTERNAL)


def _quiet_third_party_logs() -> None:
    # torchao logs missing GPU kernels at import; torch warns about its own internals.
    import logging

    for name in ("torchao", "torch.utils._pytree", "torch.onnx", "torch._export", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qconvert")
def main() -> None:
    """Quantize a PyTorch model once and emit verified int8 artifacts for every runtime.

    Exit codes: 0 ok, 1 internal error, 2 bad input, 3 a gate or parity check
    failed, 4 a requested target is unavailable here.
    """
    _quiet_third_party_logs()


_model_opt = click.option("--model", "model", required=True, help="path/to/file.py:factory, package.module:factory, or file.pt2")
_weights_opt = click.option("--weights", type=click.Path(path_type=Path),
                            help="State dict for the factory's model (loaded with weights_only=True).")
_recipe_opt = click.option("--recipe", type=click.Path(path_type=Path), required=True, help="Recipe YAML/JSON.")
_shape_opt = click.option("--input-shape", help="Input shape with batch, e.g. 1,3,32,32 (the batch stays dynamic).")


@main.command()
@_model_opt
@_weights_opt
@click.option("--recipe", type=click.Path(path_type=Path),
              help="Recipe YAML/JSON; optional when --model is a QAT checkpoint (file.pt, from qconvert.qat.save), which holds its own.")
@click.option("--calib-data", type=click.Path(path_type=Path), help="Image folder, .npy, or .npz (x, optional y).")
@click.option("--eval-data", type=click.Path(path_type=Path), help="Held-out data for parity and accuracy (.npz with y for accuracy).")
@click.option("--target", "targets", multiple=True, required=True, help="Target name; repeat for several (see 'qconvert targets').")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory (replaced atomically at the end).")
@_shape_opt
@click.option("--stats", type=click.Path(path_type=Path), help="Reuse statistics from 'qconvert calibrate' and skip calibration.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Time each artifact against the float model in its runtime (batch 1 and 16); seconds per target.")
@click.option("--compare-precision", "compare_precision", metavar="BITS,BITS",
              help="Also build these activation widths (e.g. 8,16) and compare them side by side in the report (recipe: "
                   "compare_precision).")
@click.option("--verbose", is_flag=True, help="Also show the libraries' own warnings and log lines (always kept in OUT/build.log).")
@click.option("--jobs", default="auto", show_default=True, metavar="N|auto",
              help="Worker processes that emit and verify the targets side by side after calibration (1: one after the other; "
                   "auto: as many as targets, cores and memory allow).")
def build(model: str, weights: Path | None, recipe: Path | None, calib_data: Path | None, eval_data: Path | None,
          targets: tuple[str, ...], out: Path, input_shape: str | None, stats: Path | None, quiet: bool, latency: bool,
          compare_precision: str | None, verbose: bool, jobs: str) -> None:
    """Calibrate, quantize and emit verified artifacts for each --target."""

    def go() -> None:
        from qconvert import api
        from qconvert.parallel import parse_jobs
        from qconvert.progress import reporting
        from qconvert.quiet import captured

        workers = parse_jobs(jobs)
        with captured(echo=verbose) as log, reporting(_progress(quiet, log.terminal)) as progress:  # third-party output -> OUT/build.log
            result = api.build(model, recipe, calib_data=calib_data, eval_data=eval_data, targets=targets, out=out, weights=weights,
                               input_shape=_shape(input_shape), stats=stats, latency=latency, progress=progress,
                               compare_precision=_widths(compare_precision), jobs=workers)
        if result is None:  # a secondary torchrun rank
            return
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
        click.echo(result.summary())
        click.echo(f"\nwrote {result.out}/ (report.md, report.json, report.html, stats/, {', '.join(result.targets)})")
        if result.fallback_recipe is not None:
            click.echo(f"auto_fallback kept {', '.join(result.fallback_layers)} at {result.fallback_keep}: recipe written to "
                       f"{result.fallback_recipe}")
        if not result.passed:
            raise GateFailedError(list(result.gates.failures))

    _run(go)


@main.command()
@_model_opt
@_weights_opt
@_recipe_opt
@click.option("--calib-data", type=click.Path(path_type=Path), required=True, help="Image folder, .npy, or .npz.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for stats.json and histograms.npz.")
@_shape_opt
def calibrate(model: str, weights: Path | None, recipe: Path, calib_data: Path, out: Path, input_shape: str | None) -> None:
    """Collect calibration statistics once, for reuse with 'build --stats'."""

    def go() -> None:
        from qconvert import api
        from qconvert.core.distributed import current_shard
        from qconvert.quiet import captured

        shard = current_shard()
        with captured():
            result = api.calibrate(model, recipe, calib_data, out=out, weights=weights, input_shape=_shape(input_shape))
        if result.out is None:  # a secondary torchrun rank
            return
        ranks = f" from {shard.world} ranks" if shard.world > 1 else ""
        click.echo(f"wrote statistics of {result.tensors} tensors{ranks} to {out}/")

    _run(go)


@main.command()
@_model_opt
@_weights_opt
@click.option("--input-shape", help="Input shape with batch, e.g. 1,3,32,32: run the model once and list each layer's output shape.")
@click.option("--recipe", type=click.Path(path_type=Path),
              help="Recipe: say which exclude/no_clip/overrides entry applies to each layer (its input_shape is used without "
                   "--input-shape).")
def layers(model: str, weights: Path | None, input_shape: str | None, recipe: Path | None) -> None:
    """List module names usable in exclude, no_clip and overrides (with output shapes and what a recipe does to each)."""

    def go() -> None:
        from qconvert.io.layers import layer_rows
        from qconvert.io.model import load_model
        from qconvert.quiet import captured
        from qconvert.recipe.load import load_recipe

        r = load_recipe(recipe) if recipe is not None else None
        shape = _shape(input_shape) or (r.input_shape if r is not None else None)
        with captured():
            rows = layer_rows(load_model(model, str(weights) if weights else None), shape, r)
        if shape is not None or r is not None:
            head = ["module", "type"] + (["output shape"] if shape is not None else []) + (["recipe"] if r is not None else [])
            click.echo("\t".join(head))
        for row in rows:
            click.echo(row.line(shape is not None, r is not None))

    _run(go)


@main.command()
@click.option("--available", "only_available", is_flag=True, help="Only targets whose runtime works here.")
@click.option("--names", "names_only", is_flag=True, help="Print names only, one per line (for scripts).")
def targets(only_available: bool, names_only: bool) -> None:
    """List installed target plugins and whether their runtime works here."""

    def go() -> None:
        from qconvert.targets.registry import TargetRegistry

        reg = TargetRegistry()
        if names_only:
            for name in reg.names():
                if not only_available or reg.get(name).available().ok:
                    click.echo(name)
            return
        if not reg.names():
            click.echo("no targets installed (pip install -e plugins/onnx, or see README)")
        for name in reg.names():
            try:
                t = reg.get(name)
                av = t.available()
                if only_available and not av.ok:
                    continue
                state = "available" if av.ok else f"unavailable: {av.reason}"
                click.echo(f"{name:10s} {state:12s}  {t.description}  [{reg.origin(name)}]")
                fast = t.fast_types(t.parse_options({}))
                if fast is not None:
                    click.echo(f"{'':10s} default optimize_for: {fast.default} on {fast.device}: activations {fast.activation_mode}, "
                               f"weights {fast.weight_mode} {fast.weight_granularity}")
            except QConvertError as e:
                click.echo(f"{name:10s} broken: {e}")

    _run(go)


@main.group()
def recipe() -> None:
    """Validate recipes and print their JSON Schema."""


@recipe.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
def recipe_validate(file: Path) -> None:
    """Check a recipe file; exit 2 with file, key path and line if it is wrong."""

    def go() -> None:
        from qconvert.recipe.load import load_recipe
        from qconvert.recipe.plugins import check_recipe_targets
        from qconvert.targets.registry import TargetRegistry

        registry = TargetRegistry()
        check_recipe_targets(load_recipe(file), file, registry)
        click.echo(f"{file}: ok (target sections checked against: {', '.join(registry.names()) or 'no installed targets'})")

    _run(go)


@recipe.command("schema")
def recipe_schema() -> None:
    """Print the recipe JSON Schema with every installed target's options (committed as schemas/recipe.schema.json)."""

    def go() -> None:
        from qconvert.recipe.schema import recipe_json_schema_text
        from qconvert.targets.registry import TargetRegistry

        click.echo(recipe_json_schema_text(TargetRegistry()), nl=False)

    _run(go)


@main.command()
@_model_opt
@_weights_opt
@_recipe_opt
@click.option("--calib-data", type=click.Path(path_type=Path), help="Image folder, .npy, or .npz (or --stats).")
@click.option("--eval-data", type=click.Path(path_type=Path), required=True,
              help="Data the variants are scored on (.npz with y for --metric accuracy).")
@click.option("--stats", type=click.Path(path_type=Path), help="Statistics from 'qconvert calibrate' (skips calibration).")
@click.option("--metric", type=click.Choice(["sqnr", "accuracy"]), default="sqnr", show_default=True, help="What a layer loses or regains.")
@click.option("--keep", type=click.Choice(["float", "int16"]), default="float", show_default=True,
              help="Higher precision for the regain ranking.")
@click.option("--target", help="Quantize under this target's constraints and placement (its runtime is not needed).")
@click.option("--samples", type=click.IntRange(min=1), help="Score on at most this many evaluation samples.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the ranking as JSON to this file.")
@_shape_opt
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sensitivity(model: str, weights: Path | None, recipe: Path, calib_data: Path | None, eval_data: Path, stats: Path | None,
                metric: str, keep: str, target: str | None, samples: int | None, json_out: Path | None, input_shape: str | None,
                quiet: bool) -> None:
    """Rank layers by what quantizing only them loses, and what keeping only them regains (torch simulation)."""

    def go() -> None:

        from qconvert import api
        from qconvert.errors import DataError
        from qconvert.progress import reporting
        from qconvert.sensitivity.run import sensitivity_table

        if calib_data is None and stats is None:
            raise DataError("no calibration data: pass --calib-data, or --stats from an earlier 'qconvert calibrate'")
        from qconvert.quiet import captured

        with captured() as log, reporting(_progress(quiet, log.terminal)):
            result = api.sensitivity(model, recipe, eval_data, calib_data=calib_data, stats=stats, weights=weights,
                                     input_shape=_shape(input_shape), target=target, keep=keep, samples=samples,
                                     metric=metric)  # type: ignore[arg-type]  # a click.Choice of the Metric literals
        click.echo(sensitivity_table(result))
        if json_out is not None:
            json_out.write_text(result.entry().model_dump_json(indent=1) + "\n")  # strict JSON: an exact SQNR is "inf"
            click.echo(f"wrote {json_out}")

    _run(go)


@main.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help=".npz with inputs (input_<name> or x), expected outputs output_<name>, optional labels y; default: ARTIFACT_DIR/golden.")
def verify(artifact_dir: Path, data: Path | None) -> None:
    """Run a built artifact (OUT/<target>) in its runtime and compare with its golden outputs; exit 0 or 3.

    Needs numpy, the target's plugin and runtime; never imports torch.
    """

    def go() -> None:
        from qconvert import api
        from qconvert.quiet import captured

        with captured():  # the runtime's own log lines stay off the one-screen verdict
            verdict = api.verify(artifact_dir, data)
        for line in verdict.lines():
            click.echo(line)
        if not verdict.passed:
            raise GateFailedError(verdict.failures())

    _run(go)


@main.group()
def report() -> None:
    """The JSON Schemas of the build report and the targets' manifests."""


@report.command("schema")
def report_schema() -> None:
    """Print the report.json JSON Schema (committed as schemas/report.schema.json)."""
    from qconvert.verify.report_schema import report_json_schema_text

    click.echo(report_json_schema_text(), nl=False)


@report.command("manifest-schema")
def manifest_schema() -> None:
    """Print the JSON Schema of a target's manifest.json (committed as schemas/manifest.schema.json)."""
    from qconvert.verify.manifest import manifest_json_schema_text

    click.echo(manifest_json_schema_text(), nl=False)


def run() -> None:
    """The ``qconvert`` console script: the command, then a quick exit (``qconvert.fast_exit``)."""
    from qconvert.fast_exit import run_then_exit
    from qconvert.gc_tuning import tune_for_command
    from qconvert.parallel import mark_fresh_process

    tune_for_command()  # before torch and the runtimes are imported (qconvert.gc_tuning)
    mark_fresh_process()  # --jobs auto may fork: nothing ran a runtime in this process yet
    run_then_exit(main)


if __name__ == "__main__":
    run()
