// The plain REST user API of the REST connector tests: json-server (npm, pinned by
// package-lock.json) with an in-memory `users` collection, behind two rules a real user API
// has and json-server alone lacks: a bearer token, and email addresses unique (409 on a
// duplicate, ignoring case).
//
//   node server.js <path of node_modules/json-server> <port> <token>

"use strict";

const [modulePath, port, token] = process.argv.slice(2);
if (!modulePath || !port || !token) {
  console.error("usage: node server.js <json-server module> <port> <token>");
  process.exit(2);
}
const jsonServer = require(modulePath);

const server = jsonServer.create();
const router = jsonServer.router({ users: [] });
const db = router.db;

server.use(jsonServer.defaults({ logger: true, noCors: true }));
server.use(jsonServer.bodyParser);

server.use((req, res, next) => {
  if (req.get("authorization") !== `Bearer ${token}`) {
    res.status(401).json({ message: "missing or wrong bearer token" });
    return;
  }
  next();
});

// Email addresses are unique, ignoring case, as in most user APIs.
server.use((req, res, next) => {
  const email = req.body && typeof req.body.email === "string" ? req.body.email : null;
  const creating = req.method === "POST" && req.path === "/users";
  const changing = ["PUT", "PATCH"].includes(req.method) && req.path.startsWith("/users/");
  if (email && (creating || changing)) {
    const id = changing ? decodeURIComponent(req.path.slice("/users/".length)) : null;
    const exists = id !== null && db.get("users").find((u) => String(u.id) === id).value();
    if (changing && !exists) {
      next(); // json-server answers 404
      return;
    }
    const taken = db
      .get("users")
      .find((u) => typeof u.email === "string" && u.email.toLowerCase() === email.toLowerCase() && String(u.id) !== id)
      .value();
    if (taken) {
      res.status(409).json({ message: `email ${email} is already taken by user ${taken.id}` });
      return;
    }
  }
  next();
});

server.use(router);
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`json-server on 127.0.0.1:${port}`);
});
