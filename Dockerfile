FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap git \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fonts-dejavu-core curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/taskbench
COPY pyproject.toml README.md requirements.lock ./
COPY app app
COPY worker worker
RUN pip install --no-cache-dir -c requirements.lock . && mkdir -p workspaces var
ENV TASKBENCH_HOST=0.0.0.0
EXPOSE 8000
CMD ["taskbench", "api"]
