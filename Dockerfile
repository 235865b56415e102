# One image, many targets: TARGET picks the services (see services/main.ts).
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY services ./services
COPY contracts ./contracts
COPY streams ./streams
USER node
EXPOSE 8080
CMD ["node", "services/main.ts"]
