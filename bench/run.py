"""Search benchmark: 10,000 synthetic ~4 KB pages in a temporary SQLite database.

Measures search latency (p50/p95, through the domain query including the freshness check and
snippets), full reindex speed, and what a publish costs with its index sync. `make bench`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

PAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
SEARCHES = 400
PUBLISHES = 40
CONTENT = Path(__file__).resolve().parent.parent / "content"
QUALIFIERS = [
    "notes",
    "guide",
    "in practice",
    "cheat sheet",
    "FAQ",
    "troubleshooting",
    "at scale",
    "checklist",
    "for beginners",
    "deep dive",
    "runbook",
    "lessons",
]
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*\[])")


@dataclass
class Article:
    title: str
    tags: list[str]
    sentences: list[str]


def articles() -> list[Article]:
    """The starter hub's articles: front matter read, fenced code out, split into sentences."""
    out = []
    for path in sorted(CONTENT.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title, tags = path.stem.replace("-", " ").title(), []
        front = _FRONT.match(text)
        if front:
            text = text[front.end() :]
            for line in front.group(1).splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "title":
                    title = value.strip().strip("\"'")
                elif key.strip() == "tags":
                    tags = [t.strip().lower() for t in value.strip(" []").split(",") if t.strip()]
        text = _FENCE.sub("", text)
        sentences = []
        for block in re.split(r"\n\s*\n", text):
            block = block.strip()
            if not block:
                continue
            if block.startswith("#"):
                sentences.append("\n\n" + block.splitlines()[0] + "\n\n")
                continue
            sentences += [s.strip() for s in _SENTENCE.split(" ".join(block.split())) if s.strip()]
        out.append(Article(title, tags, sentences))
    return out


def unique_word(n: int) -> str:
    """A made-up word that appears in page n only (letters only, so it is one token)."""
    letters, word = "bcdfghjklmnpqrstvwxz", ""
    while True:
        n, r = divmod(n, len(letters))
        word += letters[r]
        if n == 0:
            return "zq" + word + "x"


def body_text(rng: random.Random, corpus: list[Article], main: Article, n: int) -> str:
    """~4 KB on one topic: mostly sentences of the main article, some from others, an id word."""
    out, length = [], 0
    start = rng.randrange(len(main.sentences))
    i = start
    while length < 4000:
        if rng.random() < 0.8:
            sentence = main.sentences[i % len(main.sentences)]
            i += 1
        else:
            sentence = rng.choice(rng.choice(corpus).sentences)
        out.append(sentence)
        length += len(sentence) + 1
        if len(out) == 5:
            out.append(f"Reference {unique_word(n)} for this page.")
    return " ".join(out)


def populate(corpus: list[Article], rng: random.Random) -> None:
    from wiki.extensions import db
    from wiki.models import Page, PageEvent, Revision, User

    author = db.session.scalars(db.select(User)).first()
    now = datetime.now(UTC).replace(tzinfo=None)
    pages, revisions, events = [], [], []
    for n in range(1, PAGES + 1):
        main = corpus[n % len(corpus)]
        title = f"{main.title} {rng.choice(QUALIFIERS)} {n}"
        text = body_text(rng, corpus, main, n)
        pages.append(
            {
                "id": n,
                "slug": re.sub(r"[^\w]+", "-", title.lower()).strip("-"),
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
                "tags": " ".join(main.tags),
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


QUERIES = {
    "topic word": [
        "docker",
        "celery",
        "postgresql",
        "kubernetes",
        "redis",
        "graphql",
        "django",
        "jwt",
        "mysql",
        "terraform",
        "openapi",
        "pytest",
        "microservices",
        "rabbitmq",
        "nginx",
        "oauth",
        "ansible",
        "vacuum",
        "serializer",
        "mocking",
    ],
    "two words": [
        "redis cache",
        "jwt refresh",
        "connection pool",
        "celery retry",
        "docker compose",
        "index scan",
        "pod deployment",
        "load balancer",
        "database migration",
        "rest api",
        "async views",
        "secret rotation",
        "integration tests",
        "health check",
        "rate limit",
    ],
    "phrase": [
        '"multi-stage build"',
        '"connection pool"',
        '"rate limiting"',
        '"access token"',
        '"read replicas"',
        '"unit tests"',
        '"foreign key"',
        '"message broker"',
    ],
    "prefix": ["kube*", "postg*", "dock*", "migrat*", "serial*", "authent*", "cach*", "replic*"],
    "tag filter": [
        "tag:docker",
        "tag:security token",
        "tag:databases index",
        "tag:python async",
        "tag:kubernetes pod",
        "tag:testing fixture",
    ],
    "title filter": [
        "title:kubernetes",
        'title:"load balancing"',
        "title:celery",
        "title:graphql schema",
        "title:redis",
    ],
    "misspelling": [
        "kubernets",
        "postgersql",
        "dokcer",
        "celry",
        "grapqhl",
        "terrafrom",
        "djnago",
        "rabitmq",
    ],
    "id word": [],  # filled with the unique words of random pages
    "common word": ["data", "service", "request", "code", "time", "use", "application", "team"],
}
WEIGHTS = {
    "topic word": 25,
    "two words": 20,
    "phrase": 10,
    "prefix": 8,
    "tag filter": 8,
    "title filter": 7,
    "misspelling": 7,
    "id word": 5,
    "common word": 10,
}


def workload(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n (kind, query) pairs drawn with realistic weights."""
    QUERIES["id word"] = [unique_word(rng.randint(1, PAGES)) for _ in range(50)]
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=n)
    return [(kind, rng.choice(QUERIES[kind])) for kind in kinds]


def cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (a rebuild forks workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


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
        corpus = articles()
        t0 = time.perf_counter()
        populate(corpus, rng)
        print(f"built {PAGES} pages in {time.perf_counter() - t0:.1f}s (database only)")

        t0, c0 = time.perf_counter(), cpu_with_children()
        indexed = index.rebuild()
        reindex_s, reindex_cpu = time.perf_counter() - t0, cpu_with_children() - c0

        queries = workload(rng, SEARCHES)
        for _, q in queries[:30]:
            query.search(q)  # warm up: open the searcher, fill caches
        timings: dict[str, list[tuple[float, float]]] = {}
        matched: dict[str, list[int]] = {}
        for kind, q in queries:
            t0, c0 = time.perf_counter(), time.process_time()
            found = query.search(q)
            wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
            timings.setdefault(kind, []).append((wall, cpu))
            matched.setdefault(kind, []).append(found.total)
        worst = query.search("data")  # matches most pages: kept visible, outside the workload
        t0, c0 = time.perf_counter(), time.process_time()
        worst = query.search("data")
        worst_ms = ((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)
        suggest_t = []
        for _, q in queries[:100]:
            t0 = time.perf_counter()
            query.suggest(q[:5])
            suggest_t.append((time.perf_counter() - t0) * 1000)

        def publish_times(n: int) -> tuple[list[float], list[float]]:
            walls, cpus = [], []
            for i in range(n):
                page = db.session.get(Page, rng.randint(1, PAGES))
                text = body_text(rng, corpus, rng.choice(corpus), page.id)
                t0, c0 = time.perf_counter(), time.process_time()
                editing.save(
                    admin,
                    page=page,
                    title=page.title,
                    body=text,
                    summary=str(i),
                    base_revision_id=page.current_revision_id,
                )
                walls.append((time.perf_counter() - t0) * 1000)
                cpus.append((time.process_time() - c0) * 1000)
            return walls, cpus

        with_sync, with_cpu = publish_times(PUBLISHES)
        event.remove(Session, "after_commit", index._after_commit)
        without, without_cpu = publish_times(PUBLISHES)
        event.listen(Session, "after_commit", index._after_commit)
        t0 = time.perf_counter()
        caught_up = index.sync()
        catch_up_ms = (time.perf_counter() - t0) * 1000
        extra = statistics.median(with_sync) - statistics.median(without)
        extra_cpu = statistics.median(with_cpu) - statistics.median(without_cpu)

    every = [t for values in timings.values() for t in values]
    walls, cpus = [w for w, _ in every], [c for _, c in every]
    rows = [
        ("pages indexed", f"{indexed}", ""),
        ("reindex", f"{indexed / reindex_s:.0f} pages/s", ">= 300 pages/s"),
        ("reindex (CPU time)", f"{indexed / reindex_cpu:.0f} pages/s", ""),
        ("search p50", f"{pct(walls, 50):.1f} ms", ""),
        ("search p95", f"{pct(walls, 95):.1f} ms", "< 20 ms"),
        ("search max", f"{max(walls):.1f} ms", ""),
        (
            "search p50 / p95 / max (CPU)",
            f"{pct(cpus, 50):.1f} / {pct(cpus, 95):.1f} / {max(cpus):.1f} ms",
            "",
        ),
        (
            f'worst case "data" ({worst.total} hits)',
            f"{worst_ms[0]:.1f} ms",
            f"CPU {worst_ms[1]:.1f} ms",
        ),
        ("suggest p95", f"{pct(suggest_t, 95):.1f} ms", ""),
        ("publish p50, with sync", f"{statistics.median(with_sync):.1f} ms", ""),
        ("publish p50, no sync", f"{statistics.median(without):.1f} ms", ""),
        ("publish: sync adds (p50)", f"{extra:.1f} ms", "< 30 ms"),
        ("publish: sync adds (p50, CPU)", f"{extra_cpu:.1f} ms", ""),
        (f"catch-up sync of {caught_up} pages", f"{catch_up_ms:.0f} ms", ""),
    ]
    shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()
    print(
        f"\nload average {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} CPUs"
        " (wall times include it)"
    )
    print(f"{'measure':<{width}}  {'result':>22}  target")
    print("-" * (width + 40))
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>22}  {target}")
    print(
        f"\n{'query kind':<14} {'n':>4} {'hits p50':>9} {'wall p50/p95/max ms':>22} "
        f"{'CPU p50/p95/max ms':>22}"
    )
    for kind, values in timings.items():
        w, c = [v[0] for v in values], [v[1] for v in values]
        hits = statistics.median(matched[kind])
        print(
            f"{kind:<14} {len(values):>4} {hits:>9.0f} "
            f"{pct(w, 50):>6.1f} /{pct(w, 95):>6.1f} /{max(w):>6.1f} "
            f"{pct(c, 50):>7.1f} /{pct(c, 95):>6.1f} /{max(c):>6.1f}"
        )


if __name__ == "__main__":
    main()
