# One image for every mediacdr service; the command picks the service (`mediacdr detector`, …).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY schemas ./schemas
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install -c constraints.txt -e . && useradd --system --home /app mediacdr \
    && mkdir -p /app/var && chown mediacdr /app/var
USER mediacdr
ENTRYPOINT ["mediacdr"]
