"""Search quality on the starter hub: the obvious query for each topic finds its page first."""

from pathlib import Path

from wiki.importer import import_folder
from wiki.search import query

CONTENT = Path(__file__).resolve().parent.parent / "content"

OBVIOUS = {
    "docker": "Docker",
    "containerized": "Docker",
    "multi-stage build": "Docker",
    "kubernetes": "Kubernetes",
    "celery": "Celery and RabbitMQ",
    "rabbitmq": "Celery and RabbitMQ",
    "redis": "Caching with Redis",
    "jwt": "API Authentication with JWT and OAuth",
    "oauth": "API Authentication with JWT and OAuth",
    "graphql": "GraphQL",
    "rest vs graphql": "REST vs GraphQL",
    "postgresql": "PostgreSQL",
    "mysql": "MySQL",
    "normalization": "Database Design",
    "indexing": "Database Design",
    "terraform": "Infrastructure as Code",
    "ansible": "Infrastructure as Code",
    "pytest": "Testing in Python",
    "integration tests": "Unit vs Integration Tests",
    "openapi": "API Documentation with OpenAPI",
    "swagger": "API Documentation with OpenAPI",
    "load balancer": "Load Balancing",
    "microservices": "Microservices",
    "scalability": "System Design",
    "secrets": "Configuration and Secrets",
    "django": "Django",
    "django rest framework": "Django REST Framework",
    "serializers": "Django REST Framework",
    "async views": "Django Async Views",
    "github actions": "CI/CD Pipelines",
    "jenkins": "CI/CD Pipelines",
    "front-end": "Working with Front-End Teams",
    "python": "Python for Backend Development",
}


def test_obvious_query_for_each_topic_ranks_its_page_first(app):
    import_folder(str(CONTENT))
    misses = {}
    for text, title in OBVIOUS.items():
        hits = query.search(text).hits
        if not hits or hits[0].title != title:
            misses[text] = [h.title for h in hits[:3]]
    assert misses == {}


def test_every_page_is_found_first_by_its_own_title(app):
    report = import_folder(str(CONTENT))
    assert len(report.created) == len(list(CONTENT.glob("*.md")))
    for path in sorted(CONTENT.glob("*.md")):
        title = next(
            line.split(":", 1)[1].strip()
            for line in path.read_text().splitlines()
            if line.startswith("title:")
        )
        hits = query.search(title).hits
        assert hits and hits[0].title == title, (title, [h.title for h in hits[:3]])
