# sluice gateway image. Model servers it spawns (mlflow, ollama) must be present in the
# image or reached as `remote` replicas.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
USER node
EXPOSE 8080 8081
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--config", "config/default.yaml"]
