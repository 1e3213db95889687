// The DAG: repos and pipelines, each pipeline coloured by its state and its last job's,
// updated live.

import { get } from "./api.js";
import { drawGraph, nodeList } from "./graph.js";
import { badge, h, link, route, section, table, when } from "./ui.js";

// The repos a pipeline's spec reads (pfs inputs, in any cross/union/join/group).
export function inputRepos(input) {
  const out = [];
  const walk = (node) => {
    if (!node || typeof node !== "object") {
      return;
    }
    if (node.pfs && node.pfs.repo) {
      out.push(node.pfs.project ? `${node.pfs.project}/${node.pfs.repo}` : node.pfs.repo);
    }
    for (const key of ["cross", "union", "join", "group"]) {
      (node[key] || []).forEach(walk);
    }
  };
  walk(input);
  return [...new Set(out)];
}

function model(repos, pipelines) {
  const isPipeline = new Set(pipelines.map((p) => p.name));
  const nodes = repos
    .filter((r) => !isPipeline.has(r.name))
    .map((r) => ({ id: r.name, label: r.name, href: route("repo", r.name), classes: "repo" }));
  const edges = [];
  for (const p of pipelines) {
    nodes.push({
      id: p.name,
      label: `${p.name}\n${p.state}${p.last_job_state ? " · " + p.last_job_state : ""}`,
      href: route("pipeline", p.name),
      classes: `pipeline state-${p.state} job-${p.last_job_state || "none"}`,
    });
    for (const repo of inputRepos(p.spec.input)) {
      edges.push({ from: repo, to: p.name });
    }
  }
  const known = new Set(nodes.map((n) => n.id));
  return { nodes, edges: edges.filter((e) => known.has(e.from)) };
}

export async function dagPage(main, _params, page) {
  const [repos, pipelines] = await Promise.all([get("/repos"), get("/pipelines")]);
  const { nodes, edges } = model(repos, pipelines);
  const canvas = h("div", { class: "graph", role: "img", "aria-label": "repos and pipelines" });
  const summary = h("div", {});
  main.append(
    h("h1", {}, "Repos and pipelines"),
    nodes.length ? canvas : h("p", {}, "No repo yet: tusk create repo NAME, then put a file."),
    summary,
  );
  let cy = nodes.length ? drawGraph(canvas, nodes, edges, (href) => (location.hash = href)) : null;
  const renderSummary = (ps) => {
    summary.replaceChildren(
      section(
        "Pipelines",
        ps.length
          ? table(
              null,
              ["Pipeline", "State", "Last job", "Input", "Updated"],
              ps.map((p) => [
                link(p.name, "pipeline", p.name),
                badge(p.state),
                p.last_job ? h("a", { href: route("job", p.name, p.last_job) }, badge(p.last_job_state)) : "-",
                p.input,
                when(p.updated_at),
              ]),
            )
          : h("p", {}, "No pipeline yet."),
      ),
      nodeList("Every repo and pipeline", nodes),
    );
  };
  renderSummary(pipelines);
  // Live: the states every two seconds; the drawing is redone when the graph itself changed.
  let shape = JSON.stringify([nodes.map((n) => n.id), edges]);
  page.every(2000, async (signal) => {
    const [rs, ps] = await Promise.all([get("/repos", signal), get("/pipelines", signal)]);
    const next = model(rs, ps);
    const nextShape = JSON.stringify([next.nodes.map((n) => n.id), next.edges]);
    if (nextShape !== shape || !cy) {
      shape = nextShape;
      if (cy) {
        cy.destroy();
      }
      if (!canvas.isConnected) {
        main.insertBefore(canvas, summary);
      }
      cy = drawGraph(canvas, next.nodes, next.edges, (href) => (location.hash = href));
    } else {
      for (const n of next.nodes) {
        const node = cy.getElementById(n.id);
        node.classes(n.classes);
        node.data("label", n.label);
      }
    }
    renderSummary(ps);
  });
}
