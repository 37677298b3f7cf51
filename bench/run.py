"""Search benchmark: 10,000 synthetic ~4 KB pages in a temporary SQLite database.

Measures search latency (p50/p95, through the domain query including the freshness check and
snippets), full reindex speed, and what a publish costs with its index sync. `make bench`.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

PAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
SEARCHES = 300
PUBLISHES = 40
TECH = [
    "docker",
    "container",
    "kubernetes",
    "redis",
    "cache",
    "postgresql",
    "index",
    "query",
    "database",
    "queue",
    "celery",
    "worker",
    "latency",
    "throughput",
    "replica",
    "shard",
    "partition",
    "backup",
    "restore",
    "migration",
    "schema",
    "deploy",
    "pipeline",
    "build",
    "test",
    "lint",
    "release",
    "rollback",
    "canary",
    "metric",
    "trace",
    "log",
    "alert",
    "incident",
    "oncall",
    "nginx",
    "proxy",
    "tls",
    "certificate",
    "token",
    "oauth",
    "session",
    "cookie",
    "csrf",
    "json",
    "api",
    "endpoint",
    "rate",
    "limit",
    "python",
    "flask",
    "gunicorn",
    "thread",
    "process",
    "async",
    "event",
    "stream",
    "kafka",
    "rabbitmq",
    "broker",
    "consumer",
]


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(size)}
    return TECH + sorted(words)


_CUM: dict[int, list[float]] = {}


def body_text(rng: random.Random, vocab: list[str], size: int = 4000) -> str:
    if len(vocab) not in _CUM:  # Zipf-like weights: some words are common
        _CUM[len(vocab)] = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))
    cum = _CUM[len(vocab)]
    out, length = [], 0
    while length < size:
        words = rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 16))
        sentence = " ".join(words).capitalize() + "."
        out.append(sentence)
        length += len(sentence) + 1
        if rng.random() < 0.1:
            out.append("\n\n## " + " ".join(rng.choices(TECH, k=3)).title() + "\n\n")
    return " ".join(out)


def populate(vocab: list[str], rng: random.Random) -> None:
    from wiki.extensions import db
    from wiki.models import Page, PageEvent, Revision, User

    author = db.session.scalars(db.select(User)).first()
    now = datetime.now(UTC).replace(tzinfo=None)
    pages, revisions, events = [], [], []
    for n in range(1, PAGES + 1):
        title = f"{' '.join(rng.sample(TECH, 2)).title()} {n}"
        text = body_text(rng, vocab)
        pages.append(
            {
                "id": n,
                "slug": title.lower().replace(" ", "-"),
                "title": title,
                "current_revision_id": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        revisions.append(
            {
                "id": n,
                "page_id": n,
                "author_id": author.id,
                "title": title,
                "body": text,
                "tags": " ".join(rng.sample(TECH, 3)),
                "summary": "",
                "html": "",
                "size": len(text),
                "status": "published",
                "created_at": now,
            }
        )
        events.append({"id": n, "page_id": n, "kind": "publish", "created_at": now})
    db.session.execute(insert(Page), pages)
    db.session.execute(insert(Revision), revisions)
    db.session.execute(
        db.update(Page), [{"id": p["id"], "current_revision_id": p["id"]} for p in pages]
    )
    db.session.execute(insert(PageEvent), events)
    db.session.commit()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    from flask_migrate import upgrade

    from wiki import accounts, create_app, editing
    from wiki.extensions import db
    from wiki.models import Page
    from wiki.search import index, query

    rng = random.Random(42)
    tmp = Path(tempfile.mkdtemp(prefix="wiki-bench-"))
    app = create_app(
        {
            "ENV": "testing",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "SECRET_KEY": "bench",
            "INSTANCE_PATH": str(tmp),
            "SEARCH_INDEX_DIR": str(tmp / "index"),
            "LOG_LEVEL": "WARNING",
        }
    )
    with app.app_context():
        upgrade()
        admin = accounts.create_user("bench", "correct horse battery", role="admin")
        vocab = vocabulary(rng)
        t0 = time.perf_counter()
        populate(vocab, rng)
        print(f"built {PAGES} pages in {time.perf_counter() - t0:.1f}s (database only)")

        t0, c0 = time.perf_counter(), time.process_time()
        indexed = index.rebuild()
        reindex_s, reindex_cpu = time.perf_counter() - t0, time.process_time() - c0

        common, rare = vocab[:40], vocab[-2000:]
        queries = (
            [rng.choice(common) for _ in range(60)]
            + [rng.choice(rare) for _ in range(60)]
            + [f"{rng.choice(common)} {rng.choice(vocab[:400])}" for _ in range(60)]
            + [f'"{rng.choice(TECH)} {rng.choice(TECH)}"' for _ in range(40)]
            + [rng.choice(vocab[:300])[:4] + "*" for _ in range(30)]
            + [f"tag:{rng.choice(TECH)} {rng.choice(common)}" for _ in range(30)]
            + [rng.choice(rare)[:-1] + "q" for _ in range(20)]  # misspellings: fuzzy retry
        )
        rng.shuffle(queries)
        for q in queries[:20]:
            query.search(q)  # warm up: open the searcher, fill caches
        timings: list[float] = []
        cpu: list[float] = []
        for q in queries[:SEARCHES]:
            t0, c0 = time.perf_counter(), time.process_time()
            query.search(q)
            timings.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        suggest_t = []
        for q in queries[:100]:
            t0 = time.perf_counter()
            query.suggest(q[:5])
            suggest_t.append((time.perf_counter() - t0) * 1000)

        def publish_times(n: int) -> list[float]:
            out = []
            for i in range(n):
                page = db.session.get(Page, rng.randint(1, PAGES))
                text = body_text(rng, vocab)
                t0 = time.perf_counter()
                editing.save(
                    admin,
                    page=page,
                    title=page.title,
                    body=text,
                    summary=str(i),
                    base_revision_id=page.current_revision_id,
                )
                out.append((time.perf_counter() - t0) * 1000)
            return out

        with_sync = publish_times(PUBLISHES)
        event.remove(Session, "after_commit", index._after_commit)
        without = publish_times(PUBLISHES)
        event.listen(Session, "after_commit", index._after_commit)
        t0 = time.perf_counter()
        caught_up = index.sync()
        catch_up_ms = (time.perf_counter() - t0) * 1000
        extra = statistics.median(with_sync) - statistics.median(without)

    rows = [
        ("pages indexed", f"{indexed}", ""),
        ("reindex", f"{indexed / reindex_s:.0f} pages/s", ">= 300 pages/s"),
        ("reindex (CPU time)", f"{indexed / reindex_cpu:.0f} pages/s", ""),
        ("search p50", f"{pct(timings, 50):.1f} ms", ""),
        ("search p50 / p95 (CPU time)", f"{pct(cpu, 50):.1f} / {pct(cpu, 95):.1f} ms", ""),
        ("search p95", f"{pct(timings, 95):.1f} ms", "< 20 ms"),
        ("search max", f"{max(timings):.1f} ms", ""),
        ("suggest p95", f"{pct(suggest_t, 95):.1f} ms", ""),
        ("publish p50, with sync", f"{statistics.median(with_sync):.1f} ms", ""),
        ("publish p50, no sync", f"{statistics.median(without):.1f} ms", ""),
        ("publish: sync adds (p50)", f"{extra:.1f} ms", "< 30 ms"),
        (f"catch-up sync of {caught_up} pages", f"{catch_up_ms:.0f} ms", ""),
    ]
    shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} CPUs (wall times include it)")
    print(f"{'measure':<{width}}  {'result':>16}  target")
    print("-" * (width + 34))
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")


if __name__ == "__main__":
    main()
