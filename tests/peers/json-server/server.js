// The plain REST user API of the REST connector tests: json-server (npm, pinned by
// package-lock.json) with in-memory `users` and `groups` collections, behind what a real user
// API has and json-server alone lacks: a bearer token, email addresses and group names unique
// (409 on a duplicate, ignoring case), and membership calls in the two common shapes (a group
// keeps its members' ids in `member_ids`):
//   POST   /groups/:id/members            {"user_id": "3"}       one member; 409 if already in
//   DELETE /groups/:id/members/:user_id                          one member; 404 if not in
//   POST   /groups/:id/members            {"user_ids": ["3"]}    a list; members already in are kept
//   DELETE /groups/:id/members            {"user_ids": ["3"]}    a list; non-members are ignored
// An unknown group or user is 404.
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
const router = jsonServer.router({ users: [], groups: [] });
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

// Group names are unique, ignoring case; a new group starts with no members.
server.post("/groups", (req, res, next) => {
  const name = req.body && typeof req.body.name === "string" ? req.body.name : null;
  if (!name) {
    res.status(422).json({ message: "a group needs a name" });
    return;
  }
  const taken = db
    .get("groups")
    .find((g) => typeof g.name === "string" && g.name.toLowerCase() === name.toLowerCase())
    .value();
  if (taken) {
    res.status(409).json({ message: `group name ${name} is already taken by group ${taken.id}` });
    return;
  }
  if (!Array.isArray(req.body.member_ids)) {
    req.body.member_ids = [];
  }
  next();
});

const groupOf = (req, res) => {
  const group = db.get("groups").find((g) => String(g.id) === req.params.id);
  if (!group.value()) {
    res.status(404).json({ message: `no group ${req.params.id}` });
    return null;
  }
  return group;
};
const unknownUser = (ids) =>
  ids.find((id) => !db.get("users").find((u) => String(u.id) === String(id)).value());
const memberIds = (group) => (Array.isArray(group.value().member_ids) ? group.value().member_ids : []);

server.post("/groups/:id/members", (req, res) => {
  const group = groupOf(req, res);
  if (!group) return;
  const body = req.body || {};
  const one = typeof body.user_id === "string" ? [body.user_id] : null;
  const list = Array.isArray(body.user_ids) && body.user_ids.every((i) => typeof i === "string") ? body.user_ids : null;
  if (!one && !list) {
    res.status(422).json({ message: "send user_id (a string) or user_ids (a list of strings)" });
    return;
  }
  const ids = one || list;
  const missing = unknownUser(ids);
  if (missing !== undefined) {
    res.status(404).json({ message: `no user ${missing}` });
    return;
  }
  const members = memberIds(group);
  if (one && members.includes(one[0])) {
    res.status(409).json({ message: `user ${one[0]} is already a member of group ${req.params.id}` });
    return;
  }
  const next = members.concat(ids.filter((id, i) => !members.includes(id) && ids.indexOf(id) === i));
  group.assign({ member_ids: next }).write();
  res.status(one ? 201 : 200).json({ group_id: group.value().id, member_ids: next });
});

server.delete("/groups/:id/members/:user_id", (req, res) => {
  const group = groupOf(req, res);
  if (!group) return;
  const members = memberIds(group);
  if (!members.includes(req.params.user_id)) {
    res.status(404).json({ message: `user ${req.params.user_id} is not a member of group ${req.params.id}` });
    return;
  }
  group.assign({ member_ids: members.filter((m) => m !== req.params.user_id) }).write();
  res.status(204).end();
});

server.delete("/groups/:id/members", (req, res) => {
  const group = groupOf(req, res);
  if (!group) return;
  const ids = req.body && Array.isArray(req.body.user_ids) ? req.body.user_ids : null;
  if (!ids || ids.length === 0) {
    res.status(422).json({ message: "send user_ids, a non-empty list" });
    return;
  }
  const next = memberIds(group).filter((m) => !ids.includes(m));
  group.assign({ member_ids: next }).write();
  res.status(200).json({ group_id: group.value().id, member_ids: next });
});

server.use(router);
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`json-server on 127.0.0.1:${port}`);
});
