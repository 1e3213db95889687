// Graphs drawn by Cytoscape.js with the dagre layout (vendored: static/vendor/VENDORED.md).
// Each node is also listed as a link beside the drawing, for keyboard and screen readers.

import { h } from "./ui.js";

let registered = false;

export function drawGraph(container, nodes, edges, onOpen) {
  const cytoscape = window.cytoscape;
  if (!registered && window.cytoscapeDagre) {
    cytoscape.use(window.cytoscapeDagre);
    registered = true;
  }
  const cy = cytoscape({
    container,
    elements: [
      ...nodes.map((n) => ({ data: { id: n.id, label: n.label, href: n.href }, classes: n.classes })),
      ...edges.map((e) => ({ data: { id: `${e.from}->${e.to}`, source: e.from, target: e.to } })),
    ],
    layout: { name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 60 },
    style: [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "text-valign": "center",
          "text-halign": "center",
          "font-size": 11,
          "text-wrap": "wrap",
          "text-max-width": 120,
          width: 130,
          height: 38,
          shape: "round-rectangle",
          "background-color": "#e8eef5",
          "border-width": 2,
          "border-color": "#5b6b7d",
          color: "#111",
        },
      },
      { selector: "node.pipeline", style: { "background-color": "#dfe9ff", shape: "rectangle" } },
      { selector: "node.state-running", style: { "border-color": "#1f6feb" } },
      { selector: "node.state-paused", style: { "border-color": "#8a6d00", "border-style": "dashed" } },
      { selector: "node.job-success", style: { "background-color": "#d5f5dc" } },
      { selector: "node.job-failure", style: { "background-color": "#ffd7d5" } },
      { selector: "node.job-killed", style: { "background-color": "#f0d8ff" } },
      { selector: "node.job-running, node.job-created", style: { "background-color": "#fff3c4" } },
      { selector: "node.file", style: { "background-color": "#f4f4f4" } },
      { selector: "node:selected", style: { "border-color": "#b7791f", "border-width": 5 } },
      { selector: "node.code", style: { "background-color": "#fbeaff", shape: "tag" } },
      {
        selector: "edge",
        style: {
          width: 1.5,
          "curve-style": "bezier",
          "target-arrow-shape": "triangle",
          "line-color": "#8895a7",
          "target-arrow-color": "#8895a7",
        },
      },
    ],
    minZoom: 0.1,
    maxZoom: 3,
  });
  cy.on("tap", "node", (event) => {
    const href = event.target.data("href");
    if (href) {
      onOpen(href);
    }
  });
  keyboard(container, cy, onOpen);
  return cy;
}

// The keyboard's way through a drawn graph: Tab to it, the arrow keys go from node to node
// in reading order (left to right, then top to bottom), Enter opens the one selected; each is
// announced to screen readers.
function keyboard(container, cy, onOpen) {
  let status = container.nextElementSibling;
  if (!status || !status.classList.contains("graph-status")) {
    status = h("p", { class: "graph-status", "aria-live": "polite" });
    container.after(status);
  }
  status.textContent = "Arrow keys: go through the nodes; Enter: open one.";
  container.tabIndex = 0;
  const order = cy.nodes().sort((a, b) => a.position("x") - b.position("x") || a.position("y") - b.position("y"));
  let at = -1;
  const pick = (i) => {
    at = (i + order.length) % order.length;
    cy.nodes().unselect();
    order[at].select();
    status.textContent = `${at + 1} of ${order.length}: ${order[at].data("label").replace("\n", " · ")}`;
  };
  container.onkeydown = (event) => {
    if (!order.length) {
      return;
    }
    if (event.key === "ArrowRight" || event.key === "ArrowDown") {
      pick(at + 1);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
      pick(at < 0 ? order.length - 1 : at - 1);
    } else if (event.key === "Enter" && at >= 0 && order[at].data("href")) {
      onOpen(order[at].data("href"));
    } else {
      return;
    }
    event.preventDefault();
  };
}

// The same nodes as a list of links (the accessible form of the drawing).
export function nodeList(label, nodes) {
  return h(
    "nav",
    { "aria-label": label, class: "node-list" },
    h(
      "ul",
      {},
      nodes.map((n) => h("li", {}, n.href ? h("a", { href: n.href }, n.label.replace("\n", " · ")) : n.label)),
    ),
  );
}

