#!/usr/bin/env python3
"""The wake-word figures: runs `assistant wake test --json` over fixture folders made by
make.py and scores the detections against each truth.json.

    python3 tools/wake_fixtures/score.py --assistant target/release/assistant \\
        [--threshold 0.77] DIR [DIR ...]

prints one row per folder and a total: enrolled names detected, names by voices that
never enrolled, detections of the wrong name (a false persona switch), false wakes
(detections near no name) and their rate an hour, and the time from the end of the
name to the detection (what the engine's gate adds before it listens), p50 / p95.

A detection counts for a name when it fires between the name's start and 0.6 s after
its end (the rule tests/app/wake_word.rs uses); each detection counts once.

Make the sets with make.py, for example (the tuning set, then the held-out set, which
was scored only once, after the spotter was settled):

    for s in 7:10 11:5 21:5 31:5; do
        python3 tools/wake_fixtures/make.py /tmp/wake/tune/s${s%%:*} --seed ${s%%:*} --minutes ${s##*:}
    done
    for s in 101 202 303 404 505; do
        python3 tools/wake_fixtures/make.py /tmp/wake/held/s$s --seed $s --minutes 5
    done
"""
import argparse
import json
import subprocess
import sys


def score(truth, report):
    dets = report["detections"]
    used = [False] * len(dets)
    s = {"enrolled": [0, 0], "others": [0, 0], "wrong": 0, "latency": []}
    for g in truth["names"]:
        tally = s["enrolled"] if g["enrolled"] else s["others"]
        tally[1] += 1
        for i, d in enumerate(dets):
            if not used[i] and g["start"] <= d["at_s"] <= g["end"] + 0.6:
                used[i] = True
                if d["phrase"] == g["name"]:
                    tally[0] += 1
                    if g["enrolled"]:
                        s["latency"].append(d["at_s"] - g["end"])
                else:
                    s["wrong"] += 1
                break
    s["false"] = used.count(False)
    return s


def pct(lat, q):
    if not lat:
        return float("nan")
    lat = sorted(lat)
    return 1000 * lat[round((len(lat) - 1) * q)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--assistant", default="target/release/assistant")
    ap.add_argument("--threshold", type=float)
    a = ap.parse_args()
    rows = []
    for d in a.dirs:
        cmd = [a.assistant, "wake", "test", "--json", "--takes", f"{d}/refs", f"{d}/mix.wav"]
        if a.threshold is not None:
            cmd += ["--threshold", str(a.threshold)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: {out.stderr.strip()}")
        with open(f"{d}/truth.json") as f:
            truth = json.load(f)
        report = json.loads(out.stdout)
        rows.append((d, truth, report["threshold"], score(truth, report)))
    print("| fixture | noise | enrolled voice detected | not enrolled | wrong name | false wakes"
          " | name end → detection, p50 / p95 |")
    print("|---|---|---|---|---|---|---|")
    total = {"enrolled": [0, 0], "others": [0, 0], "wrong": 0, "false": 0, "latency": []}
    minutes = 0.0
    for d, truth, threshold, s in rows:
        minutes += truth["minutes"]
        for k in ("enrolled", "others"):
            total[k][0] += s[k][0]
            total[k][1] += s[k][1]
        total["wrong"] += s["wrong"]
        total["false"] += s["false"]
        total["latency"] += s["latency"]
        print(f"| seed {truth['seed']}, {truth['minutes']:g} min | {truth['noise_dbfs']} dBFS"
              f" | {s['enrolled'][0]} / {s['enrolled'][1]} | {s['others'][0]} / {s['others'][1]}"
              f" | {s['wrong']} | {s['false']}"
              f" | {pct(s['latency'], 0.5):.0f} / {pct(s['latency'], 0.95):.0f} ms |")
    e = total["enrolled"]
    print(f"| **all, {minutes:g} min** (threshold {threshold:.2f}) | |"
          f" **{e[0]} / {e[1]} ({100 * e[0] / max(e[1], 1):.1f} %)**"
          f" | {total['others'][0]} / {total['others'][1]} | {total['wrong']}"
          f" | **{total['false']} ({total['false'] * 60 / minutes:.1f} an hour)**"
          f" | {pct(total['latency'], 0.5):.0f} / {pct(total['latency'], 0.95):.0f} ms |")


if __name__ == "__main__":
    main()
