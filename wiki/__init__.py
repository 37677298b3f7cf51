"""Nexus Wiki: a collaborative Markdown wiki with peer review and search."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask

import config as settings
from wiki.extensions import csrf, db, limiter, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the application; tests pass a mapping of settings."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(
            (overrides or {}).get("INSTANCE_PATH")
            or os.environ.get("INSTANCE_PATH")
            or ROOT / "instance"
        ),
    )
    app.config.update(settings.load(app.instance_path, overrides))
    app.config.update(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        WTF_CSRF_TIME_LIMIT=24 * 3600,  # long edits must not lose their token
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_DURATION=30 * 24 * 3600,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=app.config["SESSION_COOKIE_SECURE"],
        RATELIMIT_HEADERS_ENABLED=True,
        SEND_FILE_MAX_AGE_DEFAULT=0,
    )
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(message)s")
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]  # client address and scheme as the proxy saw them
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    from wiki import models  # noqa: F401  (registers the tables)
    from wiki.database import configure_engine

    with app.app_context():
        configure_engine(db.engine)

    from wiki import errors, web
    from wiki.admin.views import bp as admin_bp
    from wiki.auth.views import bp as auth_bp
    from wiki.manage.views import bp as manage_bp
    from wiki.pages.views import bp as pages_bp
    from wiki.review.views import bp as review_bp
    from wiki.search.views import bp as search_bp
    from wiki.special.views import bp as special_bp

    for bp in (auth_bp, pages_bp, manage_bp, special_bp, review_bp, search_bp, admin_bp):
        app.register_blueprint(bp)
    errors.register(app)
    web.register(app)

    from wiki.search import index as search_index
    from wiki.search import vector

    search_index.init_app(app)
    vector.configure(app.config["SEARCH_CACHE_MB"])

    from wiki.cli import wiki_cli

    app.cli.add_command(wiki_cli)
    return app
