"""Helm v4 through its own library: the few functions of libhelm_sdkpy.so (the helm-sdkpy wheel,
fetched by hack/helm-sdk.sh) that Spore's scripts call through ctypes, and the values merge
`helm -f` does. Used by hack/helm_lint.py and hack/helm_release.py."""

import copy
import ctypes
import json
import pathlib


def deep_merge(base, override):
    """`override` over `base`, maps merged key by key, as Helm merges values files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Helm:
    """One Helm configuration (namespace, kubeconfig) of libhelm_sdkpy.so."""

    def __init__(self, library: pathlib.Path, namespace: str = "default", kubeconfig: str = None):
        self.lib = ctypes.CDLL(str(library))
        lib = self.lib
        lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [
            ctypes.POINTER(ctypes.c_ulonglong)
        ]
        lib.helm_sdkpy_config_create.restype = ctypes.c_int
        lib.helm_sdkpy_lint.argtypes = [
            ctypes.c_ulonglong,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.helm_sdkpy_lint.restype = ctypes.c_int
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
        lib.helm_sdkpy_version_string.restype = ctypes.c_void_p
        lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
        handle = ctypes.c_ulonglong()
        rc = lib.helm_sdkpy_config_create(
            namespace.encode(),
            kubeconfig.encode() if kubeconfig else None,
            None,
            b"{}",
            ctypes.byref(handle),
        )
        if rc != 0:
            raise RuntimeError(f"helm_sdkpy_config_create failed: {self.last_error()}")
        self.handle = handle.value

    def last_error(self) -> str:
        err = self.lib.helm_sdkpy_last_error()
        return ctypes.string_at(err).decode() if err else "(no message)"

    def version(self) -> str:
        ptr = self.lib.helm_sdkpy_version_string()
        return ctypes.string_at(ptr).decode() if ptr else "?"

    def _json(self, rc: int, out: ctypes.c_void_p, action: str) -> dict:
        """The JSON a call returned in `out` (freed), or RuntimeError with Helm's message."""
        if rc != 0:
            raise RuntimeError(f"{action}: {self.last_error()}")
        if not out.value:
            return {}
        text = ctypes.string_at(out.value).decode()
        self.lib.helm_sdkpy_free(out)
        return json.loads(text) if text else {}

    def lint(self, chart: pathlib.Path) -> list:
        """Helm's lint messages for `chart` as (severity, path) pairs."""
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_lint(self.handle, str(chart).encode(), ctypes.byref(out))
        if rc != 0:
            raise RuntimeError(f"helm lint could not run on {chart}: {self.last_error()}")
        if not out.value:
            raise RuntimeError("helm lint returned no result")
        result = self._json(rc, out, "lint")
        messages = [(m.get("Severity", 0), m.get("Path", "")) for m in result.get("Messages") or []]
        if result.get("Errors"):
            messages.append((3, f"{len(result['Errors'])} error(s)"))
        return messages

    def release(self, action: str, name: str, chart: str, values: dict, timeout: int) -> dict:
        """`helm upgrade --wait`; with action "install", `helm upgrade --install --create-namespace`."""
        options = {"wait": True, "timeout_seconds": timeout, "disable_openapi_validation": False}
        if action == "install":
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
        return self._json(rc, out, action)

    def uninstall(self, name: str, timeout: int) -> dict:
        """`helm uninstall --wait`."""
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_uninstall(self.handle, name.encode(), 1, timeout, ctypes.byref(out))
        return self._json(rc, out, "uninstall")
