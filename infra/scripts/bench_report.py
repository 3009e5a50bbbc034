"""Writes the benchmark suite's section of a performance report from the results directory that
infra/scripts/bench.sh fills: bench_report.py RESULTS_DIR OUTPUT.md

When OUTPUT.md exists and holds the bench-suite markers, only that section is replaced;
otherwise the section is written alone. Fails (non-zero) when a result is missing or unreadable:
that means a driver broke. A slow figure never fails it.
"""

import json
import math
import re
import sys
from pathlib import Path

BEGIN = "<!-- bench-suite:begin (written by infra/scripts/bench.sh; edit the scripts, not this section) -->"
END = "<!-- bench-suite:end -->"

# Published AWS prices used for the cost figure: us-east-1, x86_64, on-demand, as listed on the
# AWS pricing pages for Lambda, API Gateway, SQS and DynamoDB in 2025 (free tiers ignored).
PRICES = {
    "as_of": "2025 (AWS pricing pages; re-check before quoting)",
    "region": "us-east-1",
    "lambda_gb_second": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "http_api_request": 1.00 / 1e6,
    "sqs_fifo_request": 0.50 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,
    "dynamodb_read_unit": 0.125 / 1e6,
}


def load_env(path):
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def met(ok):
    return "met" if ok else "**missed**"


def ingest_rows(text):
    """Rows (what, ours, baseline, ratio, goal) from the ingest bench's printed report."""
    lines = [l for l in text.splitlines() if l.strip()]
    rows = []
    for i, line in enumerate(lines):
        found = re.search(r"ratio\s+([0-9.]+)×\s*\(goal ≤ ([0-9.]+)×", line)
        if found and i >= 2:
            ours, base = lines[i - 2], lines[i - 1]
            split = lambda l: re.match(r"^(.*?)\s{2,}(\S+)\s*$", l.rstrip()).groups()
            rows.append((*split(ours), *split(base), float(found.group(1)), float(found.group(2))))
    if not rows:
        raise SystemExit("the ingest bench printed no ratio: it broke or changed its output")
    return rows


def rate_rows(text):
    rows = []
    for line in text.splitlines():
        found = re.search(
            r"limit (\d+)/s, (\d+) callers, (\d+) s: (\d+) requests .*?\(([0-9.]+)/s.*?(\d+) answered 429 by the target, (\d+) other errors, busiest one-second window (\d+)",
            line,
        )
        if found:
            n, callers, secs, sent, rate, refused, other, busiest = found.groups()
            rows.append(dict(limit=int(n), seconds=int(secs), rate=float(rate), refused=int(refused), other=int(other), busiest=int(busiest)))
    if not rows:
        raise SystemExit("rate_limit_bench printed no result line")
    return rows


def scale_figures(text):
    figures = {}
    imported = re.search(r"--- import.*?\n(?:.*\n)*?elapsed ([0-9.]+) s, peak RSS (\d+) KiB", text)
    drained = re.search(r"drained in ([0-9.]+) s \(serve start included\), serve peak RSS (\d+) kB; final depth (.*)", text)
    users = re.search(r"generated (\d+) users", text)
    if not (imported and drained and users):
        raise SystemExit("bench-import.sh did not report the import and the drain")
    figures["users"] = int(users.group(1))
    figures["import_s"] = float(imported.group(1))
    figures["import_rss_mib"] = int(imported.group(2)) / 1024
    figures["drain_s"] = float(drained.group(1))
    figures["serve_rss_mib"] = int(drained.group(2)) / 1024
    figures["final_depth"] = drained.group(3)
    return figures


def lambda_rows(section):
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 9 and cells[0] in ("webhook", "worker", "log-api"):
            size = float(cells[1].split()[0])
            init_median, init_max = (float(x) for x in cells[3].split("/"))
            peak = float(cells[6].split("/")[1].split()[0])
            rows.append(dict(name=cells[0], size_mb=size, init_median=init_median, init_max=init_max, peak_mib=peak, memory=cells[8]))
    measured = re.search(r"Measured (.*?) on", section)
    if len(rows) != 3:
        raise SystemExit("the bench-lambdas section of docs/performance.md has no table of the three functions")
    return rows, (measured.group(1) if measured else "unknown date")


def memory_setting(peak_mib):
    """The smallest Lambda memory setting (MB) with at least twice the peak."""
    return max(128, int(math.ceil(2 * peak_mib / 64.0)) * 64)


def cost_lines(lambdas):
    p = PRICES
    memory = {r["name"]: memory_setting(r["peak_mib"]) for r in lambdas}
    events = 1_000_000
    # Assumptions, stated in the report.
    per_message = 100  # notifications per Outbound Message
    webhook_ms = 100  # billed per 100-notification message
    worker_batch = 10  # jobs per SQS batch
    worker_ms = 1000  # billed per batch (target-bound: two SCIM calls per job, groups in parallel)
    wru_per_event, rru_per_event = 3, 1  # link write + log entry (+ index), link read
    messages = events / per_message
    batches = events / worker_batch
    sqs_requests = events / 10 * 3  # SendMessageBatch + ReceiveMessage + DeleteMessageBatch per 10
    gb = lambda name: memory[name] / 1024
    items = [
        ("API Gateway HTTP API", f"{messages:,.0f} requests × ${p['http_api_request'] * 1e6:.2f}/M", messages * p["http_api_request"]),
        ("webhook Lambda, compute", f"{messages:,.0f} × {webhook_ms} ms × {gb('webhook'):.3f} GB × ${p['lambda_gb_second']:.10f}/GB-s", messages * webhook_ms / 1000 * gb("webhook") * p["lambda_gb_second"]),
        ("webhook Lambda, requests", f"{messages:,.0f} × ${p['lambda_request'] * 1e6:.2f}/M", messages * p["lambda_request"]),
        ("SQS FIFO", f"{sqs_requests:,.0f} requests (send, receive, delete per 10 jobs) × ${p['sqs_fifo_request'] * 1e6:.2f}/M", sqs_requests * p["sqs_fifo_request"]),
        ("worker Lambda, compute", f"{batches:,.0f} batches × {worker_ms} ms × {gb('worker'):.3f} GB × ${p['lambda_gb_second']:.10f}/GB-s", batches * worker_ms / 1000 * gb("worker") * p["lambda_gb_second"]),
        ("worker Lambda, requests", f"{batches:,.0f} × ${p['lambda_request'] * 1e6:.2f}/M", batches * p["lambda_request"]),
        ("DynamoDB writes", f"{events * wru_per_event:,.0f} WRU × ${p['dynamodb_write_unit'] * 1e6:.3f}/M", events * wru_per_event * p["dynamodb_write_unit"]),
        ("DynamoDB reads", f"{events * rru_per_event:,.0f} RRU × ${p['dynamodb_read_unit'] * 1e6:.3f}/M", events * rru_per_event * p["dynamodb_read_unit"]),
    ]
    total = sum(cost for _, _, cost in items)
    lines = [
        f"Prices: {p['region']}, x86_64, on-demand, as published {p['as_of']}; free tiers ignored.",
        f"Assumptions: {per_message} notifications per Outbound Message; the webhook billed {webhook_ms} ms per message; "
        f"the worker billed {worker_ms} ms per batch of {worker_batch} jobs (it waits on the target, which dominates); "
        f"{wru_per_event} DynamoDB write units and {rru_per_event} read unit per event (items under 1 KB); Lambda memory "
        f"as justified above ({', '.join(f'{k} {v} MB' for k, v in memory.items())}). The log API and CloudWatch are left out.",
        "",
        "| item | arithmetic | cost per million events |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {how} | ${cost:.4f} |" for what, how, cost in items]
    lines.append(f"| **total** | | **${total:.2f}** |")
    return lines, memory


def render(results):
    env = load_env(results / "machine.env")
    quick = env.get("quick") == "1"
    enqueue = json.loads((results / "enqueue.json").read_text())
    overhead = json.loads((results / "overhead.json").read_text())
    latency = json.loads((results / "latency.json").read_text())
    ingest = ingest_rows((results / "ingest.txt").read_text())
    rates = rate_rows((results / "rate_limit.txt").read_text())
    lambdas, lambdas_date = lambda_rows((results / "lambdas.md").read_text())
    scale = scale_figures((results / "scale.txt").read_text())

    out = [BEGIN, ""]
    out.append(f"Measured {env['date']}{' (QUICK MODE: small sizes, figures not comparable)' if quick else ''} "
               f"on {env['cores']} cores of {env['cpu']}, {env['memory']} memory, {env['kernel']}, {env['rustc']}; "
               f"cargo profile `{env['profile']}`, commit {env['commit']}. The machine is shared with other builds: "
               f"load average (1, 5, 15 min) {env['load_before']} before the suite and {env.get('load_after', '?')} after; "
               f"the suite took {env.get('seconds', '?')} s. Compare ratios within one run, not absolute times across runs.")
    out += ["", "```sh", "infra/scripts/bench.sh            # this report", "infra/scripts/bench.sh --quick    # CI: small sizes, report in $CARGO_TARGET_DIR/bench-quick/", "```", ""]
    out += ["| # | figure | value | baseline (same run) | ratio | goal | |", "|---|---|---|---|---|---|---|"]
    for what, ours, base_what, base, ratio, goal in ingest:
        out.append(f"| 1 | {what} | {ours} | {base} ({base_what}) | {ratio:.2f}× | ≤ {goal}× | {met(ratio <= goal)} |")
    for run in enqueue["runs"]:
        ok = run["send_calls_at_proxy"] == run["minimum_calls"] and run["retries"] == 0
        out.append(
            f"| 2 | SQS send calls per 100 notifications × {run['apps']} app(s) ({run['jobs']} jobs, {run['messages']} messages) | "
            f"{run['calls_per_100_notifications']:.1f} calls; {run['retries']} retries | {run['minimum_per_100_notifications']} (ceil(jobs / 10)) | "
            f"{run['ratio']:.2f}× | the minimum, no retries | {met(ok)} |")
    out.append(
        f"| 3 | worker time per job ({overhead['jobs']} jobs, one worker loop, one message at a time) | {overhead['worker_ms_per_job']:.2f} ms "
        f"({overhead['worker_jobs_per_second']:.0f} jobs/s) | {overhead['baseline_ms_per_job']:.2f} ms (one POST to the same target + one redb write) | "
        f"{overhead['ratio']:.2f}× | ≤ 1.2× | {met(overhead['ratio'] <= 1.2)} |")
    out.append(
        f"| 4 | webhook response → target write, p50 ({latency['events']} events at {latency['offered_per_second']}/s) | {latency['p50_ms']:.1f} ms | | | ≤ 20 ms | {met(latency['p50_ms'] <= 20)} |")
    out.append(
        f"| 4 | same, p99 (max {latency['max_ms']:.1f} ms) | {latency['p99_ms']:.1f} ms | | | ≤ 100 ms | {met(latency['p99_ms'] <= 100)} |")
    for r in rates:
        util = r["rate"] / r["limit"]
        ok = util >= 0.95 and r["busiest"] <= r["limit"] and r["refused"] == 0
        out.append(
            f"| 5 | rate-limit utilisation at {r['limit']}/s ({r['seconds']} s) | {r['rate']:.1f}/s; {r['refused']} 429s; busiest second {r['busiest']} | "
            f"{r['limit']}/s (the target's limit) | {util:.2f} | ≥ 0.95, never above 1.0, no 429 | {met(ok)} |")
    for l in lambdas:
        out.append(
            f"| 6 | {l['name']} Lambda: stripped size; cold init median / max; peak memory | {l['size_mb']} MB; {l['init_median']} / {l['init_max']} ms; {l['peak_mib']} MiB, so {memory_setting(l['peak_mib'])} MB of Lambda memory | "
            f"12 MB; 20 ms | {l['size_mb'] / 12:.2f}; {l['init_median'] / 20:.2f} / {l['init_max'] / 20:.2f} | ≤ 12 MB, ≤ 20 ms | "
            f"{met(l['size_mb'] <= 12 and l['init_max'] <= 20)} (measured {lambdas_date}) |")
    per_user_ms = scale["drain_s"] * 1000 / scale["users"]
    total_s = scale["import_s"] + scale["drain_s"]
    out.append(
        f"| 7 | {scale['users']:,} users: import + provisioning to the mock target | {total_s:.0f} s ({scale['import_s']:.0f} s import, {scale['drain_s']:.0f} s provisioning, "
        f"{scale['users'] / scale['drain_s']:.0f} jobs/s); peak RSS import {scale['import_rss_mib']:.0f} MiB, serve {scale['serve_rss_mib']:.0f} MiB | "
        f"300 s (the goal) | {total_s / 300:.2f} | < 5 min, memory flat | {met(total_s < 300)} |")
    out += ["", "How each figure is measured:", ""]
    out += [
        "1. `cargo bench -p userprov-core --bench ingest` (read as it prints; its own doc says how).",
        "2. `perf_suite enqueue`: moto behind a counting HTTP proxy (every SQS call the SDK makes, retries included, passes it); "
        "the webhook's own `Ingest` over the SQS adapter queues Outbound Messages of 100 notifications for configurations of 1 and 3 apps.",
        "3. `perf_suite overhead`: jobs queued by `Ingest` into the embedded queue, then one worker loop receives one message, "
        "handles and settles it, as `userprov serve` does; the baseline is one bare POST of the same user to the same minimal in-process "
        "SCIM target plus one bare redb write transaction (1 KB). The worker's job is a find and a create, a link read and write, a log entry, "
        "and the queue's receive and settle.",
        "4. `perf_suite latency`: `userprov serve`'s stack in process with 4 workers, one single-user Outbound Message at a time at a fixed "
        "rate; from the instant the webhook's response reaches the client to the instant the minimal target receives the create (target time excluded).",
        "5. `rate_limit_bench N seconds 8` (its own doc says how).",
        f"6. The bench-lambdas section below (`infra/scripts/bench-lambdas.sh`, run separately: a release build of the three functions; "
        "`WITH_LAMBDAS=1` makes this script re-run it first).",
        f"7. `DRAIN=1 infra/scripts/bench-import.sh {scale['users']}`: `userprov import` of generated users, then `userprov serve --mock-target` "
        f"with 4 workers until the queue is empty (final depth {scale['final_depth']}).",
        "",
        "### Cost per million provisioning events on AWS",
        "",
    ]
    lines, memory = cost_lines(lambdas)
    out += lines
    out += ["", "Raw driver output is in the results directory (`$CARGO_TARGET_DIR/bench/`).", "", END]
    return "\n".join(out) + "\n"


def main():
    results, output = Path(sys.argv[1]), Path(sys.argv[2])
    section = render(results)
    marker = BEGIN.split(" (")[0]
    text = output.read_text() if output.exists() else ""
    if marker in text:
        start = text.index(marker)
        end = text.index(END) + len(END) + 1
        output.write_text(text[:start] + section + text[end:])
    elif "\n## " in text:
        # First run into an existing report: the suite goes before its first section.
        at = text.index("\n## ") + 1
        output.write_text(text[:at] + "## The benchmark suite\n\n" + section + "\n" + text[at:])
    else:
        output.write_text("# Performance\n\n## The benchmark suite\n\n" + section)


if __name__ == "__main__":
    main()
