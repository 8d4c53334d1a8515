"""`python -m bench [SCENARIO ...] [--quick] [--set SCENARIO.PARAM=VALUE ...]`

Prints one JSON object per scenario on stdout (progress goes to stderr) and merges them into
bench/results/latest.json. A missed target is a figure, never a failure: the exit status is 1
only when a scenario itself could not run (its object then carries "error").
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform as pyplatform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import RESULTS, SOURCE, Options, git_commit, wait_quiet
from bench.scenarios import ORDER


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def save(results: list[dict[str, Any]]) -> Path:
    """Merge into latest.json: a scenario run now replaces its previous object, others stay."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    previous: list[dict[str, Any]] = []
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = []
    by_name = {item.get("scenario"): item for item in previous if isinstance(item, dict)}
    for item in results:
        by_name[item["scenario"]] = item
    ordered = [by_name[name] for name in ORDER if name in by_name]
    path.write_text(json.dumps(ordered, indent=2, default=_default) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: everything in under two minutes")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.PARAM=VALUE",
                        help="override one size (also SIAR_BENCH_<SCENARIO>_<PARAM>=VALUE in the environment)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the daemon (every thread) or the in-process work; text under bench/results/profiles/")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (configs, databases, daemon logs)")
    parser.add_argument("--workdir", type=Path, help="where work folders go (default: the system temp folder)")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="before each scenario wait up to SECONDS for the 1-min load average to drop under cores/2")
    parser.add_argument("--no-save", action="store_true", help="do not merge into bench/results/latest.json")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in ORDER]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(ORDER)}")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            parser.error(f"--set wants SCENARIO.PARAM=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    opts = Options(quick=args.quick, overrides=overrides, keep=args.keep, profile=args.profile, workdir=args.workdir,
                   quiet_wait_s=args.quiet_wait)
    chosen = args.scenarios or list(ORDER)
    if str(SOURCE) not in sys.path:
        sys.path.insert(0, str(SOURCE))  # in-process scenarios (sync, scale) import from it too
    commit = git_commit()
    results: list[dict[str, Any]] = []
    failed = False
    for name in chosen:
        load = wait_quiet(opts.quiet_wait_s)
        started = time.time()
        print(f"[bench] {name}{' (quick)' if opts.quick else ''} (load {load}) ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.scenarios.{name}")
            result = module.run(opts)
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - report it as the scenario's object and go on
            failed = True
            traceback.print_exc(file=sys.stderr)
            result = {"scenario": name, "error": f"{type(exc).__name__}: {exc}", "quick": opts.quick}
        result["loadavg_1m_at_start"] = load
        result["elapsed_s"] = round(time.time() - started, 1)
        result["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        result["commit"] = commit
        if SOURCE != Path(__file__).resolve().parent.parent:
            result["source"] = str(SOURCE)
        result["python"] = pyplatform.python_version()
        results.append(result)
        print(json.dumps(result, default=_default), flush=True)
    if not args.no_save:
        path = save(results)
        print(f"[bench] written to {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
