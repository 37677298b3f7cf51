"""WSGI entry point: `gunicorn wsgi:app`, and FLASK_APP=wsgi.py for the CLI."""

from wiki import create_app

app = create_app()
