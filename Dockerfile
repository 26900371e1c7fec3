# sluice gateway image (README: "Container and Kubernetes"). Model servers it spawns other
# than the built-in simulator (mlflow, ollama, llama.cpp) must be added to the image or
# reached as `remote` replicas. test/deploy/ lints this file with hadolint and runs its
# ENTRYPOINT, CMD, ENV, USER and HEALTHCHECK as written.

# The full image (not -slim) to build in: it has gcc and libc6-dev for the Node-API addon
# native/reuseport.c, and node_api.h under /usr/local/include/node. Only its output reaches
# the final stage, which has no compiler.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts/build-native.sh ./scripts/
COPY native/reuseport.c ./native/
RUN npx tsc -p tsconfig.json && bash scripts/build-native.sh && npm prune --omit=dev

FROM node:20-bookworm-slim
# Debian's tini (bookworm) as PID 1: it passes SIGTERM on to sluice, which drains and then
# stops its model servers itself (they run in their own sessions, so tini's -g would not
# reach them anyway), and it reaps whatever is orphaned to it. npm, npx, corepack and yarn
# are not needed at run time: removed, they leave less to patch. The state dir belongs to
# the unprivileged user (uid 1000, the base image's `node`); the rest of the image is root's.
ARG TINI_VERSION=0.19.0-1+b3
RUN apt-get update \
 && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
    /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
    /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
    /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && install -d -o 1000 -g 1000 -m 0750 /var/lib/sluice
WORKDIR /app
# The data plane listens on every interface. The admin API asks for every interface too, but
# sluice binds it there only when SLUICE_ADMIN_TOKEN is set; without a token it stays on
# 127.0.0.1 inside the container (a warning says so), where HEALTHCHECK still reaches it.
ENV NODE_ENV=production \
    SLUICE_HOST=0.0.0.0 \
    SLUICE_PORT=8080 \
    SLUICE_ADMIN_HOST=0.0.0.0 \
    SLUICE_ADMIN_PORT=8081 \
    SLUICE_STATE_DIR=/var/lib/sluice
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build/reuseport.node ./native/build/
COPY package.json ./
COPY config ./config
VOLUME /var/lib/sluice
# Numeric, so that Kubernetes' runAsNonRoot can check it without the image's /etc/passwd.
USER 1000:1000
EXPOSE 8080 8081
# /readyz: 503 while the deployments start and once a drain has begun. Node's own http and
# https clients: the image has no curl. Whether the admin port speaks TLS (admin.tls) is in
# the config file, which the image does not know: plain HTTP first, then HTTPS (a TLS port
# drops a plain request at once). The certificate is not checked: it names the service, not
# the 127.0.0.1 of this container's own process. One deadline for both tries.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "setTimeout(() => process.exit(1), 2500); const get = (m, o) => new Promise((ok, no) => m.get({ host: '127.0.0.1', port: process.env.SLUICE_ADMIN_PORT, path: '/readyz', ...o }, (r) => { r.resume(); ok(r.statusCode); }).on('error', no)); get(require('node:http')).catch(() => get(require('node:https'), { rejectUnauthorized: false })).then((s) => process.exit(s === 200 ? 0 : 1), () => process.exit(1))"]
# The Node flags of src/node-flags.ts (`sluice node-flags`), written out: an exec-form
# ENTRYPOINT has no shell to run $(...), and tini must be PID 1 for signals to reach sluice.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--no-memory-reducer", "--single-threaded-gc", "dist/cli.js"]
CMD ["serve", "--config", "config/default.yaml"]
