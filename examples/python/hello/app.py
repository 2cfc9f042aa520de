"""Spore's Python command example: a `wasi:cli/command` component (componentize-py) that prints
a greeting, its arguments and the `GREETING_NAME` environment variable.

  hello fail   exits with status 3 (Spore shows exit code 1: WASI 0.2's exit carries only failure)
  hello throw  raises: the run export fails and the traceback reaches stderr
"""
import json
import sys

from wit_world import exports
from wit_world.imports import environment


class Run(exports.Run):
    def run(self) -> None:
        env = dict(environment.get_environment())
        args = environment.get_arguments()[1:]
        name = env.get("GREETING_NAME", "world")
        print(f"Hello, {name}, from a Python component on Spore!")
        print(f"args: {json.dumps(args)}")
        if args[:1] == ["fail"]:
            print("failing on purpose, as asked", file=sys.stderr)
            sys.exit(3)
        if args[:1] == ["throw"]:
            raise RuntimeError("raised on purpose")
