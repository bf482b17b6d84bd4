"use strict";
// Our router mounted in a user's Express 5 app, the way the design card's users
// run it (issue 17): `express.json()` for the app's own routes, one route of
// the app's own, and the SSE router at "/". Same tokens and routes as the
// standalone server (`dist/cli.js`), which serves the router without Express.
//
// env: SSE_SECRET (64 hex), PORT
const path = require("node:path");
const express = require("express");
const { createSseRouter } = require(path.join(__dirname, "..", "..", "dist", "index.js"));

const port = Number(process.env.PORT || 8000);
const app = express();
app.use(express.json());
// The app's own route, registered before the router like a typical app's API.
app.post("/api/echo", (req, res) => res.json({ ok: true, body: req.body ?? null }));
// The router's defaults are the standalone server's (CORS "*", token TTL, heartbeat...).
app.use("/", createSseRouter({ secret: process.env.SSE_SECRET }));

app.listen(port, "127.0.0.1", () => console.log(`express-mounted listening on http://127.0.0.1:${port}`));
process.on("SIGTERM", () => process.exit(0));
