#!/bin/sh
# Container entrypoint.
#   serve    (default) apply migrations, make sure an admin exists, then run gunicorn
#   migrate  apply migrations, make sure an admin exists, import the starter pages, exit
#   anything else is run as a command (e.g. `flask wiki backup /data/backup.db`)
# Set RUN_MIGRATIONS=false on replicas when a separate `migrate` step runs first (compose).
set -eu

prepare() {
    flask db upgrade
    flask wiki ensure-admin
}

case "${1:-serve}" in
    serve)
        if [ "${RUN_MIGRATIONS:-true}" != "false" ]; then
            prepare
        fi
        exec gunicorn -c gunicorn.conf.py wsgi:app
        ;;
    migrate)
        prepare
        if [ "${IMPORT_STARTER_CONTENT:-true}" != "false" ]; then
            flask wiki import content --if-empty
        fi
        ;;
    *)
        exec "$@"
        ;;
esac
