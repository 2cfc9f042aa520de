#!/usr/bin/env python3
"""`helm upgrade --install`, `helm upgrade` and `helm uninstall` through Helm v4's own library
(libhelm_sdkpy.so from the helm-sdkpy wheel, through hack/helm_lib.py as hack/helm_lint.py),
for machines without a helm binary. Used by the end-to-end suite (e2e/src/cluster/helm.rs).

  helm_release.py LIB --kubeconfig K --namespace NS install|upgrade RELEASE CHART [-f VALUES]...
                      [--timeout SECONDS]
  helm_release.py LIB --kubeconfig K --namespace NS uninstall RELEASE [--timeout SECONDS]

Values files (YAML or JSON) are merged in order, later ones winning, as `helm -f` does. Exits
non-zero with Helm's error message on failure.
"""

import argparse
import pathlib
import sys

import yaml

from helm_lib import Helm, deep_merge


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("action", choices=["install", "upgrade", "uninstall"])
    parser.add_argument("release")
    parser.add_argument("chart", nargs="?")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args()
    helm = Helm(pathlib.Path(args.library), args.namespace, args.kubeconfig)
    try:
        if args.action == "uninstall":
            result = helm.uninstall(args.release, args.timeout)
        else:
            if not args.chart:
                parser.error(f"{args.action} needs a chart")
            values = {}
            for path in args.values:
                with open(path, encoding="utf-8") as f:
                    values = deep_merge(values, yaml.safe_load(f) or {})
            result = helm.release(args.action, args.release, args.chart, values, args.timeout)
    except RuntimeError as err:
        print(f"helm {err}", file=sys.stderr)
        return 1
    info = result.get("info") or {}
    print(f"helm {args.action} {args.release}: {info.get('status', 'done')}"
          f" (revision {result.get('version', '-')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
