# The example project's production image: the runtime requirements only (no test, lint or benchmark
# tools: those are in requirements-dev.txt), static files collected for WhiteNoise, served by gunicorn as
# an unprivileged user. docker-compose.yml runs it as web, worker, crons and the one-shot migrate.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
# .dockerignore keeps .venv, .git, the SQLite database, media/, tests/ and bench/ out.
COPY . .
RUN python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --uid 10001 --no-create-home app \
    && mkdir -p /app/media \
    && chown app /app/media
USER app
EXPOSE 8000
# Exec form: gunicorn is PID 1 and gets SIGTERM itself (graceful shutdown of in-flight requests).
CMD ["gunicorn", "example.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--access-logfile", "-"]
