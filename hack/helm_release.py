#!/usr/bin/env python3
"""`helm upgrade --install`, `helm upgrade` and `helm uninstall` through Helm v4's own library
(libhelm_sdkpy.so from the helm-sdkpy wheel, called through ctypes as hack/helm_lint.py does),
for machines without a helm binary. Used by the end-to-end suite (e2e/src/cluster/helm.rs).

  helm_release.py LIB --kubeconfig K --namespace NS install|upgrade RELEASE CHART [-f VALUES]...
                      [--timeout SECONDS]
  helm_release.py LIB --kubeconfig K --namespace NS uninstall RELEASE [--timeout SECONDS]

Values files (YAML or JSON) are merged in order, later ones winning, as `helm -f` does. Exits
non-zero with Helm's error message on failure.
"""

import argparse
import ctypes
import json
import sys

import yaml


def merge(base, override):
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class Helm:
    def __init__(self, library, namespace, kubeconfig):
        self.lib = ctypes.CDLL(library)
        lib = self.lib
        lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [
            ctypes.POINTER(ctypes.c_ulonglong)
        ]
        lib.helm_sdkpy_config_create.restype = ctypes.c_int
        release_args = [ctypes.c_ulonglong] + [ctypes.c_char_p] * 5 + [
            ctypes.POINTER(ctypes.c_void_p)
        ]
        for fn in (lib.helm_sdkpy_install, lib.helm_sdkpy_upgrade):
            fn.argtypes = release_args
            fn.restype = ctypes.c_int
        lib.helm_sdkpy_uninstall.argtypes = [
            ctypes.c_ulonglong,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.helm_sdkpy_uninstall.restype = ctypes.c_int
        lib.helm_sdkpy_last_error.restype = ctypes.c_void_p
        lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
        handle = ctypes.c_ulonglong()
        rc = lib.helm_sdkpy_config_create(
            namespace.encode(), kubeconfig.encode(), None, b"{}", ctypes.byref(handle)
        )
        if rc != 0:
            raise RuntimeError(f"configuration: {self.last_error()}")
        self.handle = handle.value

    def last_error(self):
        err = self.lib.helm_sdkpy_last_error()
        return ctypes.string_at(err).decode() if err else "(no message)"

    def _result(self, rc, out, action):
        if rc != 0:
            raise RuntimeError(f"{action}: {self.last_error()}")
        if not out.value:
            return {}
        text = ctypes.string_at(out.value).decode()
        self.lib.helm_sdkpy_free(out)
        return json.loads(text) if text else {}

    def release(self, action, name, chart, values, timeout):
        options = {
            "wait": True,
            "timeout_seconds": timeout,
            "disable_openapi_validation": False,
        }
        if action == "install":
            # `helm upgrade --install`, creating the namespace
            options.update({"install": True, "create_namespace": True})
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_upgrade(
            self.handle,
            name.encode(),
            chart.encode(),
            json.dumps(values).encode(),
            b"",
            json.dumps(options).encode(),
            ctypes.byref(out),
        )
        return self._result(rc, out, action)

    def uninstall(self, name, timeout):
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_uninstall(self.handle, name.encode(), 1, timeout, ctypes.byref(out))
        return self._result(rc, out, "uninstall")


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
    helm = Helm(args.library, args.namespace, args.kubeconfig)
    try:
        if args.action == "uninstall":
            result = helm.uninstall(args.release, args.timeout)
        else:
            if not args.chart:
                parser.error(f"{args.action} needs a chart")
            values = {}
            for path in args.values:
                with open(path, encoding="utf-8") as f:
                    values = merge(values, yaml.safe_load(f) or {})
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
