# meshrelay image: built with the full toolchain, run on distroless Node 20 as a non-root user.
# docker build -t ghcr.io/meshrelay/meshrelay:0.1.0 .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY src src
COPY proto proto
COPY test test
COPY bench bench
# `npm ci` compiles the TypeScript (prepare); then only runtime dependencies are kept.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist/src dist/src
COPY --from=build /src/dist/bench dist/bench
COPY --from=build /src/proto proto
# Blocks of 1 MiB and more get mappings of their own, returned to the system when freed (see
# src/limits/memory-reclaimer.ts, ALLOCATOR_ENV): memory taken by an attack is given back.
ENV MALLOC_MMAP_THRESHOLD_=1048576
USER 65532:65532
EXPOSE 15012 15014
ENTRYPOINT ["/nodejs/bin/node", "dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/meshrelay/config.yaml"]
