"""Fault injection: kills during writes, corrupted files, forged ledgers, hostile suites.

``python -m benchmarks faults`` runs :func:`vvuq_twin.testing.faults.run_all`:

* a forked process writing a result, a prediction, two summaries and a ledger is killed with
  SIGKILL at 12 (quick: 10) moments spread over three write cycles; every final file must be
  absent (only one that never existed), the old complete version or the new one;
* a saved result is truncated, has bytes flipped inside its stored draws and data, and is
  edited naively (theta + 1, y x 10, diagnostics set to pass, a ledger entry set to pass, a
  group or the checksum removed); plus random byte flips anywhere in the file (each must be
  detected or leave the loaded content identical);
* an assimilation checkpoint is corrupted the same way (particles x 3, weights zeroed, seed,
  RNG state or counter edited, past data cut or changed, files truncated or deleted);
* ledger JSON gets forged PASS entries, edited, removed, reordered or duplicated entries and
  malformed text;
* validation suites name ``os:system``, ``subprocess:run``, ``builtins:exec``, a module planted
  in a parent directory, a local module re-exporting ``os.system``, vvuq_twin's CLI, ...

Every figure must be 100 %. Writes ``benchmarks/results/faults.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from vvuq_twin.testing.faults import run_all

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"


def _pct(a: int, b: int) -> str:
    return f"{a} / {b} ({100.0 * a / b:.0f} %)" if b else "0 / 0"


def main(quick: bool = False) -> dict:
    out = run_all(n_kills=10 if quick else 12)
    k, r, c, l, s = (out[x] for x in ("kills", "result_files", "checkpoints", "ledger", "suite"))
    flips = r["random_flips"]
    lines = [
        f"kills survived (SIGKILL during writes):   {_pct(k['survived'], k['kills'])}; "
        f"{k['kills_inside_a_write']} landed inside a write {k['inside_write_by_file']}, "
        f"write cycle {k['write_cycle_s']:.2f} s",
        f"corrupted result files detected:          {_pct(r['detected'], r['tried'])}",
        f"  random byte flips: {flips['tried']} tried, {flips['detected']} detected, "
        f"{flips['identical']} loaded identical content, {flips['silently_wrong']} silently wrong",
        f"corrupted checkpoints detected:           {_pct(c['detected'], c['tried'])}",
        f"forged/edited ledger entries detected:    {_pct(l['detected'], l['tried'])}",
        f"  known limit: {l['limitation_last_entries_cut_with_count_and_head_rewritten']}",
        f"refused suite callables (nothing ran):    {_pct(s['refused'], s['tried'])}",
        f"wall time {out['wall_time_s']:.1f} s",
    ]
    print("\n".join(lines))
    out["summary"] = lines
    out["all_100_percent"] = bool(
        k["survived"] == k["kills"] and r["detected"] == r["tried"]
        and flips["silently_wrong"] == 0 and c["detected"] == c["tried"]
        and l["detected"] == l["tried"] and s["refused"] == s["tried"])
    print(f"all 100 %: {out['all_100_percent']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from vvuq_twin._io import atomic_write_text

    atomic_write_text(RESULTS, json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
