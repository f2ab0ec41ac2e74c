from qconvert.cli import run

run()
