// A pipeline (its spec's versions with a diff between them, the code each ran, its jobs), a
// job (its datums, filtered by state; each datum's logs, followed while it runs), and a file's
// lineage drawn as a graph.

import { del, enc, filePath, get, post } from "./api.js";
import { drawGraph, nodeList } from "./graph.js";
import {
  badge, duration, facts, h, link, notice, route, section, short, table, when,
} from "./ui.js";

function jobsTable(jobs) {
  return table(
    null,
    ["Job", "State", "Version", "Started", "Duration", "Datums", "Processed", "Skipped", "Failed"],
    jobs.map((j) => [
      link(short(j.id), "job", j.pipeline, j.id),
      badge(j.state),
      String(j.version),
      when(j.started_at || j.created_at),
      duration(j.started_at, j.finished_at),
      String(j.datums_total),
      String(j.processed),
      String(j.skipped),
      String(j.failed),
    ]),
  );
}

// Two texts as a line diff (longest common subsequence; specs are short).
export function lineDiff(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      out.push([" ", x[i]]);
      i++;
      j++;
    } else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) {
      out.push(["+", y[j]]);
      j++;
    } else {
      out.push(["-", x[i]]);
      i++;
    }
  }
  return out;
}

// Where a version's code came from: the git commit its spec file was in, else the file.
function codeOf(version) {
  const o = version.origin || {};
  const git = o.git || {};
  const bits = [git.sha && `git ${short(git.sha)}${git.dirty ? " (uncommitted changes)" : ""}`,
    git.path || o.spec_file];
  return bits.filter((b) => b).join(" · ") || "-";
}

export async function pipelinePage(main, params, page) {
  const [name] = params;
  const info = await get(`/pipelines/${enc(name)}?history=true`);
  main.append(
    h("h1", {}, "Pipeline ", h("span", { class: "name" }, name)),
    facts([
      ["State", badge(info.state)],
      info.process_state && ["Process", `${info.process_state} (restarts: ${info.restarts})`],
      ["Version", String(info.version)],
      ["Input", info.input],
      ["Output", link(`${name}@${info.output_branch}`, "repo", name, info.output_branch)],
      ["Last job", info.last_job ? link(short(info.last_job), "job", name, info.last_job) : "-"],
      ["Updated", when(info.updated_at)],
    ]),
    h("p", { class: "actions" },
      h("button", { type: "button", "data-needs": "write", onclick: async () => {
        await post(`/pipelines/${enc(name)}/${info.state === "paused" ? "start" : "stop"}`);
        location.reload();
      } }, info.state === "paused" ? "Start pipeline" : "Stop pipeline"),
      " ",
      h("button", { type: "button", class: "danger", "data-needs": "own", onclick: async () => {
        // eslint-disable-next-line no-alert
        if (window.confirm(`Delete pipeline ${name} and its output repo?`)) {
          await del(`/pipelines/${enc(name)}`);
          location.hash = "#/";
        }
      } }, "Delete pipeline")),
  );
  const versions = [...info.versions].sort((a, b) => b.version - a.version);
  const pick = (id) =>
    h(
      "select",
      { id, "aria-label": id === "v-old" ? "older version" : "newer version" },
      versions.map((v) => h("option", { value: String(v.version) }, `version ${v.version}`)),
    );
  const older = pick("v-old");
  const newer = pick("v-new");
  if (versions.length > 1) {
    older.value = String(versions[1].version);
  }
  const diffBox = h("div", {});
  const showDiff = () => {
    const spec = (v) => JSON.stringify(versions.find((x) => String(x.version) === v).spec, null, 2);
    diffBox.replaceChildren(
      h(
        "pre",
        { class: "diff", tabindex: "0", "aria-label": "spec diff" },
        lineDiff(spec(older.value), spec(newer.value)).map(([mark, line]) =>
          h("span", { class: mark === "+" ? "added" : mark === "-" ? "removed" : "" }, `${mark} ${line}\n`),
        ),
      ),
    );
  };
  older.addEventListener("change", showDiff);
  newer.addEventListener("change", showDiff);
  main.append(
    section(
      "Spec versions",
      table(
        null,
        ["Version", "Created", "Spec hash", "Code"],
        versions.map((v) => [String(v.version), when(v.created_at), short(v.spec_hash), codeOf(v)]),
      ),
      h("p", { class: "inline" }, h("label", { for: "v-old" }, "Diff "), older, h("label", { for: "v-new" }, " to "), newer),
      diffBox,
    ),
  );
  showDiff();
  const jobsBox = h("div", {});
  main.append(section("Jobs", jobsBox));
  const refresh = async (signal) => {
    const jobs = await get(`/jobs?pipeline=${enc(name)}`, signal);
    jobsBox.replaceChildren(jobs.length ? jobsTable(jobs.slice(0, 100)) : h("p", {}, "No job yet."));
  };
  await refresh();
  page.every(2000, refresh);
}

const DATUM_STATES = ["all", "pending", "running", "success", "skipped", "failed", "recovered"];

export async function jobPage(main, params, page) {
  const [pipeline, id] = params;
  const header = h("div", {});
  const datumsBox = h("div", {});
  const logsBox = h("div", { id: "logs" });
  const filter = h(
    "select",
    { id: "datum-filter", "aria-label": "datum state" },
    DATUM_STATES.map((s) => h("option", { value: s }, s)),
  );
  let job = await get(`/pipelines/${enc(pipeline)}/jobs/${enc(id)}`);
  let datums = [];
  let following = null; // the datum whose logs are shown
  let lastLog = 0;
  const actions = h("p", { class: "actions" });
  const renderHeader = () => {
    header.replaceChildren(
      facts([
        ["Pipeline", link(pipeline, "pipeline", pipeline)],
        ["State", badge(job.state)],
        job.reason && ["Reason", job.reason],
        ["Version", String(job.version)],
        ["Output commit", link(short(job.output_commit), "commit", pipeline, job.output_commit)],
        ["Inputs", h("span", {}, job.input_commits.map((c) => {
          const [repo, cid] = c.split("@");
          return [link(c, "commit", repo, cid), " "];
        }))],
        ["Started", when(job.started_at || job.created_at)],
        ["Duration", duration(job.started_at, job.finished_at)],
        ["Datums", `${job.datums_total} (processed ${job.processed}, skipped ${job.skipped}, failed ${job.failed})`],
      ]),
    );
    actions.replaceChildren();
    if (job.state === "running" || job.state === "created") {
      actions.append(
        h("button", { type: "button", class: "danger", "data-needs": "write", onclick: async () => {
          await post(`/pipelines/${enc(pipeline)}/jobs/${enc(id)}/stop`);
          await tick();
        } }, "Stop job"),
      );
    } else if (job.state === "failure" || job.state === "killed") {
      actions.append(
        h("button", { type: "button", "data-needs": "write", onclick: async () => {
          const started = await post(`/pipelines/${enc(pipeline)}/run`);
          actions.append(notice(`A new job started: ${short(started.commit_set)}`));
          location.hash = route("job", pipeline, started.commit_set);
        } }, "Run the pipeline again"),
      );
    }
  };
  const renderDatums = () => {
    const wanted = filter.value;
    const shown = datums.filter((d) => wanted === "all" || d.state === wanted);
    datumsBox.replaceChildren(
      table(
        `${shown.length} of ${datums.length} datums`,
        ["Datum", "State", "Tries", "Duration", "Input files", "Error", ""],
        shown.slice(0, 500).map((d) => [
          short(d.id),
          badge(d.state),
          String(d.attempts),
          duration(d.started_at, d.finished_at),
          d.files.map((f) => `${f.repo}:${f.path}`).join(", "),
          d.error || "",
          h("button", { type: "button", class: "link", onclick: () => openLogs(d.id) }, "logs"),
        ]),
      ),
    );
  };
  const logLines = h("pre", { class: "logs", "aria-live": "polite", tabindex: "0", "aria-label": "logs" });
  const openLogs = async (datumId) => {
    following = datumId;
    lastLog = 0;
    logLines.replaceChildren();
    logsBox.replaceChildren(h("h3", {}, `Logs of datum ${short(datumId)}`), logLines);
    await readLogs();
  };
  const readLogs = async (signal) => {
    if (!following) {
      return;
    }
    const q = `job=${enc(id)}&datum=${enc(following)}&after=${lastLog}`;
    const lines = await get(`/pipelines/${enc(pipeline)}/logs?${q}`, signal);
    for (const l of lines) {
      logLines.append(h("span", { class: `log-${l.stream}` }, `${new Date(l.ts * 1000).toLocaleTimeString()} ${l.line}\n`));
      lastLog = l.id;
    }
    if (!lines.length && !logLines.firstChild) {
      logLines.append("(no output)\n");
    }
  };
  const tick = async (signal) => {
    job = await get(`/pipelines/${enc(pipeline)}/jobs/${enc(id)}`, signal);
    datums = await get(`/pipelines/${enc(pipeline)}/jobs/${enc(id)}/datums`, signal);
    renderHeader();
    renderDatums();
    await readLogs(signal);
  };
  filter.addEventListener("change", renderDatums);
  main.append(
    h("h1", {}, "Job ", h("span", { class: "name" }, `${pipeline}@${short(id)}`)),
    header,
    actions,
    section("Datums", h("p", { class: "inline" }, h("label", { for: "datum-filter" }, "Show "), filter), datumsBox),
    logsBox,
  );
  await tick();
  const failed = datums.find((d) => d.state === "failed");
  if (failed) {
    await openLogs(failed.id);
  }
  // Live until the job is done (and once more after, for the last lines).
  page.every(1000, async (signal) => {
    if (["success", "failure", "killed"].includes(job.state) && page.ticks > 1) {
      return;
    }
    await tick(signal);
  });
}

export async function lineagePage(main, params) {
  const [repo, ref, ...rest] = params;
  const path = "/" + rest.join("/");
  const step = await get(`/repos/${enc(repo)}/commits/${enc(ref)}/lineage/${filePath(path)}`);
  const nodes = [];
  const edges = [];
  const seen = new Set();
  const visit = (s) => {
    const fileId = `${s.repo}@${s.commit}:${s.path}`;
    if (!seen.has(fileId)) {
      seen.add(fileId);
      const segments = s.path.split("/").filter((p) => p);
      nodes.push({ id: fileId, label: `${s.repo}:${s.path}\n@${short(s.commit)}`, href: route("repo", s.repo, s.commit, ...segments), classes: "file" });
    }
    if (s.pipeline) {
      const jobId = `job ${s.pipeline}@${s.job}/${s.datum}`;
      if (!seen.has(jobId)) {
        seen.add(jobId);
        nodes.push({ id: jobId, label: `${s.pipeline} v${s.pipeline_version}\ndatum ${short(s.datum)}`, href: route("job", s.pipeline, s.job), classes: "pipeline" });
        const code = s.code || {};
        const codeText = code.sha ? `code ${short(code.sha)}` : s.image ? `image ${s.image}` : `spec ${short(s.spec_hash)}`;
        const codeId = `code ${s.pipeline}@${s.pipeline_version}`;
        if (!seen.has(codeId)) {
          seen.add(codeId);
          nodes.push({ id: codeId, label: codeText, href: route("pipeline", s.pipeline), classes: "code" });
        }
        edges.push({ from: codeId, to: jobId });
      }
      edges.push({ from: jobId, to: fileId });
      for (const input of s.inputs) {
        edges.push({ from: `${input.repo}@${input.commit}:${input.path}`, to: jobId });
        visit(input);
      }
    }
  };
  visit(step);
  const canvas = h("div", { class: "graph", role: "img", "aria-label": `lineage of ${repo}@${ref}:${path}` });
  main.append(
    h("h1", {}, "Lineage of ", h("span", { class: "name" }, `${repo}@${short(ref)}:${path}`)),
    canvas,
    nodeList("Every file, job and code version in this lineage", nodes),
  );
  drawGraph(canvas, nodes, edges, (href) => (location.hash = href));
}
