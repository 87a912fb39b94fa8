#!/usr/bin/env python3
"""One line naming the host a benchmark ran on, for the first line of every script's output:

  AMD EPYC (AMD, family 25 model 17 stepping 1), 2 CPUs

the same form as kite::cpu::describe() in the C++ benchmarks (less the kernel tuning): the model
name, vendor, family, model and stepping of the first processor in /proc/cpuinfo, and the CPUs
this process may run on. Where /proc/cpuinfo is absent (not Linux) it falls back to
platform.processor(). Scripts in bench/ import it (`import hostinfo`); shell scripts run it:

  echo "# host: $(python3 bench/hostinfo.py)"

Standard library only.
"""
import os
import platform

VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}


def cpu_count():
    """CPUs this process may run on (its affinity mask), or all of them where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def describe():
    """The host as one line (see the module's docstring)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():  # the end of the first processor's block
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    cpus = cpu_count()
    if "vendor_id" not in fields and "model name" not in fields:
        name = platform.processor() or platform.machine() or "unknown CPU"
        return f"{name}, {cpus} CPUs"
    vendor = fields.get("vendor_id", "")
    name = fields.get("model name") or "unknown CPU"
    return (f"{name} ({VENDORS.get(vendor, vendor or 'unknown')}, family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')} stepping {fields.get('stepping', '?')}), {cpus} CPUs")


if __name__ == "__main__":
    print(describe())
