// The console's shell: the header (search, who is signed in), the router, and a page's life
// (its live updates stop when the user leaves it).

import { ApiError, enc, get } from "./js/api.js";
import { dagPage } from "./js/dag.js";
import { jobPage, lineagePage, pipelinePage } from "./js/pps.js";
import { commitPage, repoPage } from "./js/repo.js";
import { clear, h, notice, route } from "./js/ui.js";

const main = document.getElementById("main");
const who = document.getElementById("who");

const PAGES = {
  "": dagPage,
  repo: repoPage,
  commit: commitPage,
  pipeline: pipelinePage,
  job: jobPage,
  lineage: lineagePage,
  search: searchPage,
};

// What a page may do while it is shown: repeat a step (live updates) until the user leaves.
class Page {
  constructor() {
    this.timers = [];
    this.controller = new AbortController();
    this.ticks = 0;
  }

  every(ms, step) {
    let busy = false;
    const timer = setInterval(async () => {
      if (busy) {
        return;
      }
      busy = true;
      try {
        this.ticks += 1;
        await step(this.controller.signal);
      } catch (err) {
        if (err.name !== "AbortError") {
          console.warn("live update failed", err);
        }
      } finally {
        busy = false;
      }
    }, ms);
    this.timers.push(timer);
  }

  leave() {
    this.timers.forEach(clearInterval);
    this.controller.abort();
  }
}

let current = null;

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [name, ...params] = parts;
  return { name: name || "", params: params.filter((p, i) => p !== "" || i < params.length - 1) };
}

async function show() {
  if (current) {
    current.leave();
  }
  const page = (current = new Page());
  const { name, params } = parse(location.hash);
  clear(main);
  const render = PAGES[name];
  if (!render) {
    main.append(h("h1", {}, "Not found"), notice(`There is no page "${name}".`, "error"));
    return;
  }
  try {
    await applyRoles(["repo", "commit", "pipeline", "job", "lineage"].includes(name) ? params[0] : null);
    await render(main, params, page);
    main.focus({ preventScroll: true });
  } catch (err) {
    if (page !== current) {
      return;
    }
    clear(main);
    if (err instanceof ApiError && err.status === 404) {
      main.append(h("h1", {}, "Not found"), notice(err.message, "error"));
    } else if (err instanceof ApiError && err.status === 401) {
      location.assign("/console/login.html#" + encodeURIComponent(location.hash));
    } else {
      main.append(h("h1", {}, "Something went wrong"), notice(err.message || String(err), "error"));
    }
  }
}

// Search: a repo or pipeline by name, a commit or job by id (or a prefix of 6+).
async function searchPage(mainEl, params) {
  const q = (params[0] || "").trim();
  mainEl.append(h("h1", {}, "Search for ", h("span", { class: "name" }, q)));
  const [repos, pipelines, jobs] = await Promise.all([get("/repos"), get("/pipelines"), get("/jobs")]);
  const hits = [];
  const lower = q.toLowerCase();
  for (const r of repos) {
    if (r.name.toLowerCase().includes(lower)) {
      hits.push(h("li", {}, "repo ", h("a", { href: route("repo", r.name) }, r.name)));
    }
  }
  for (const p of pipelines) {
    if (p.name.toLowerCase().includes(lower)) {
      hits.push(h("li", {}, "pipeline ", h("a", { href: route("pipeline", p.name) }, p.name)));
    }
  }
  if (/^[0-9a-f]{6,32}$/.test(lower)) {
    for (const j of jobs) {
      if (j.id.startsWith(lower)) {
        hits.push(h("li", {}, "job ", h("a", { href: route("job", j.pipeline, j.id) }, `${j.pipeline}@${j.id}`)));
      }
    }
    for (const r of repos) {
      try {
        const c = await get(`/repos/${enc(r.name)}/commits/${enc(lower)}`);
        hits.push(h("li", {}, "commit ", h("a", { href: route("commit", r.name, c.id) }, `${r.name}@${c.id}`)));
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) {
          throw err;
        }
      }
    }
  }
  mainEl.append(hits.length ? h("ul", { class: "hits" }, hits) : notice(`Nothing matches "${q}".`));
}

// What the signed-in user may do on the page's repo: buttons marked data-needs="write" or
// "own" show only when the roles allow it (the API would refuse anyway).
async function applyRoles(repo) {
  const body = document.body.dataset;
  if (body.auth !== "on") {
    body.canWrite = "yes";
    body.canOwn = "yes";
    return;
  }
  let perms = [];
  if (repo) {
    try {
      perms = (await get(`/auth/repos/${enc(repo)}/check`)).permissions;
    } catch {
      perms = [];
    }
  }
  body.canWrite = perms.includes("repo.write") ? "yes" : "no";
  body.canOwn = perms.includes("repo.own") ? "yes" : "no";
}

async function whoAmI() {
  try {
    const me = await get("/auth/whoami");
    document.body.dataset.auth = me.active === false ? "off" : "on";
    who.replaceChildren(
      me.principal ? h("span", {}, me.principal, " · ", h("a", { href: "/console/login.html#logout" }, "Sign out")) : "auth off",
    );
    document.body.dataset.roles = (me.cluster_roles || []).join(" ");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      location.assign("/console/login.html#" + encodeURIComponent(location.hash));
      return;
    }
    who.replaceChildren("");
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) {
    location.hash = route("search", q);
  }
});
window.addEventListener("hashchange", show);
whoAmI().then(show);
