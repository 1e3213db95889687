// A repo: its branches, its history and a file browser with previews; a commit: provenance,
// subvenance and what changed.

import { del, enc, fileUrl, filePath, get } from "./api.js";
import { badge, facts, h, link, notice, route, section, short, size, table, when } from "./ui.js";

const PAGE = 100; // entries per page of a listing
export const PREVIEW_MAX = 2 * 1024 * 1024; // bytes shown in a preview; bigger: download only
const PARQUET_MAX = 32 * 1024 * 1024; // a Parquet file is read whole (its footer is at the end)
const ROWS = 50; // rows of a table previewed

function commitsTable(repo, commits) {
  return table(
    null,
    ["Commit", "Branch", "State", "Started", "Size", "Files", "Origin", "Description"],
    commits.map((c) => [
      link(short(c.id), "commit", repo, c.id),
      c.branch || "-",
      badge(c.state),
      when(c.started_at),
      size(c.size),
      String(c.files),
      c.provenance.length ? "pipeline" : "user",
      c.description || "",
    ]),
  );
}

// A listing page by page: a "more" button fetches the next page.
function paged(fetchPage, render) {
  const box = h("div", {});
  let offset = 0;
  const more = h("button", { type: "button", class: "more", hidden: true }, "Show more");
  const load = async () => {
    const items = await fetchPage(offset, PAGE + 1);
    const shown = items.slice(0, PAGE);
    offset += shown.length;
    box.insertBefore(render(shown), more);
    more.hidden = items.length <= PAGE;
  };
  more.addEventListener("click", load);
  box.append(more);
  return { box, load };
}

export async function repoPage(main, params) {
  const [repo, ref = "", ...rest] = params;
  const info = await get(`/repos/${enc(repo)}`);
  const branch = ref || (info.branches.includes("master") ? "master" : info.branches[0] || "");
  const path = "/" + rest.join("/");
  main.append(
    h("h1", {}, "Repo ", h("span", { class: "name" }, repo)),
    facts([
      ["Description", info.description || "-"],
      ["Created", when(info.created_at)],
      ["Size", size(info.size)],
    ]),
    h("p", { class: "actions" }, h("button", {
      type: "button", class: "danger", "data-needs": "own",
      onclick: async () => {
        // eslint-disable-next-line no-alert
        if (window.confirm(`Delete repo ${repo} and all its commits?`)) {
          await del(`/repos/${enc(repo)}`);
          location.hash = "#/";
        }
      },
    }, "Delete repo")),
  );
  const branches = await get(`/repos/${enc(repo)}/branches`);
  main.append(
    section(
      "Branches",
      branches.length
        ? table(
            null,
            ["Branch", "Head", "Provenance"],
            branches.map((b) => [
              link(b.name, "repo", repo, b.name),
              b.head ? link(short(b.head), "commit", repo, b.head) : "-",
              b.provenance.join(", ") || "-",
            ]),
          )
        : h("p", {}, "No branch yet."),
    ),
  );
  if (!branch) {
    return;
  }
  const files = await browse(repo, branch, path);
  main.append(files);
  const history = paged(
    (offset, limit) =>
      get(`/repos/${enc(repo)}/commits?ref=${enc(branch)}&number=${limit}&offset=${offset}`),
    (commits) => commitsTable(repo, commits),
  );
  main.append(section(`History of ${branch}`, history.box));
  await history.load();
}

async function browse(repo, ref, path) {
  let info;
  try {
    info = await get(`/repos/${enc(repo)}/commits/${enc(ref)}/info/${filePath(path)}`);
  } catch (err) {
    if (err.status === 404 && path === "/") {
      return section(`Files at ${ref}`, h("p", {}, "No commit on this branch yet."));
    }
    throw err;
  }
  if (info.type === "file") {
    return section(`File ${path}`, await preview(repo, ref, info));
  }
  const crumbs = [link(repo, "repo", repo, ref)];
  const parts = path.split("/").filter((p) => p);
  parts.forEach((part, i) => {
    crumbs.push(" / ", link(part, "repo", repo, ref, ...parts.slice(0, i + 1)));
  });
  const listing = paged(
    (offset, limit) =>
      get(
        `/repos/${enc(repo)}/commits/${enc(ref)}/list/${filePath(path)}?offset=${offset}&limit=${limit}`,
      ),
    (entries) =>
      table(
        null,
        ["Name", "Type", "Size", ""],
        entries.map((f) => {
          const name = f.path.split("/").pop() + (f.type === "dir" ? "/" : "");
          const segments = f.path.split("/").filter((p) => p);
          return [
            link(name, "repo", repo, ref, ...segments),
            f.type,
            size(f.size),
            f.type === "file"
              ? h("a", { href: route("lineage", repo, ref, ...segments) }, "lineage")
              : "",
          ];
        }),
      ),
  );
  const box = section(`Files at ${ref}`, h("p", { class: "crumbs" }, crumbs), listing.box);
  await listing.load();
  return box;
}

// CSV: the first rows, quotes honoured.
export function parseCsv(text, maxRows) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch === '"' && field === "") {
      quoted = true; // a quote opens a field only at its start
    } else if (ch === ",") {
      row.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") {
        i++;
      }
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else {
      field += ch;
    }
  }
  if ((field || row.length) && rows.length < maxRows) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

async function preview(repo, ref, info) {
  const url = fileUrl(repo, ref, info.path);
  const download = h("a", { href: url, download: info.path.split("/").pop() }, "Download");
  const segments = info.path.split("/").filter((p) => p);
  const head = h(
    "p",
    { class: "file-actions" },
    `${size(info.size)} · `,
    download,
    " · ",
    h("a", { href: route("lineage", repo, ref, ...segments) }, "Lineage"),
    " · ",
    link("Folder", "repo", repo, ref, ...segments.slice(0, -1)),
  );
  const name = info.path.toLowerCase();
  const parquet = name.endsWith(".parquet");
  if (info.size > (parquet ? PARQUET_MAX : PREVIEW_MAX)) {
    return h("div", {}, head, notice(`Too big to preview (${size(info.size)}): download it instead.`));
  }
  const response = await fetch(url, { credentials: "same-origin" });
  const blob = await response.blob();
  let shown;
  if (parquet) {
    shown = await parquetTable(await blob.arrayBuffer());
  } else if (/\.(png|jpe?g|gif|webp|bmp)$/.test(name)) {
    shown = h("img", { src: URL.createObjectURL(blob), alt: info.path, class: "preview-image" });
  } else {
    const text = await blob.text();
    if (name.endsWith(".csv") || name.endsWith(".tsv")) {
      const rows = parseCsv(name.endsWith(".tsv") ? text.replaceAll("\t", ",") : text, ROWS + 1);
      const [header, ...body] = rows;
      shown = table(`First ${body.length} rows`, header || [], body);
    } else if (name.endsWith(".json")) {
      try {
        shown = h("pre", { class: "preview", tabindex: "0", "aria-label": "file contents" }, JSON.stringify(JSON.parse(text), null, 2));
      } catch {
        shown = h("pre", { class: "preview", tabindex: "0", "aria-label": "file contents" }, text);
      }
    } else if (text.includes("\u0000")) {
      shown = notice("Binary data: download it to look inside.");
    } else {
      shown = h("pre", { class: "preview", tabindex: "0", "aria-label": "file contents" }, text);
    }
  }
  return h("div", { class: "file-preview" }, head, shown);
}

// A Parquet file's first rows as a table (hyparquet, vendored: vendor/VENDORED.md).
async function parquetTable(buffer) {
  const { parquetMetadata, parquetReadObjects } = await import("../vendor/hyparquet/index.js");
  let rows;
  let total;
  try {
    total = Number(parquetMetadata(buffer).num_rows);
    rows = await parquetReadObjects({ file: buffer, rowEnd: ROWS });
  } catch (err) {
    return notice(`Not a Parquet file this preview can read (${err.message}): download it.`);
  }
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const cell = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x)) : String(v));
  return table(`First ${rows.length} of ${total} rows`, columns, rows.map((r) => columns.map((c) => cell(r[c]))));
}

export async function commitPage(main, params) {
  const [repo, id] = params;
  const c = await get(`/repos/${enc(repo)}/commits/${enc(id)}`);
  main.append(
    h("h1", {}, "Commit ", h("span", { class: "name" }, `${repo}@${short(c.id)}`)),
    facts([
      ["Id", c.id],
      ["Repo", link(repo, "repo", repo)],
      ["Branch", c.branch ? link(c.branch, "repo", repo, c.branch) : "-"],
      ["State", badge(c.state)],
      ["Parent", c.parent ? link(short(c.parent), "commit", repo, c.parent) : "-"],
      ["Started", when(c.started_at)],
      ["Finished", when(c.finished_at)],
      ["Size", `${size(c.size)} in ${c.files} files`],
      ["Commit set", c.commit_set],
      ["Description", c.description || "-"],
    ]),
    section("Provenance", refs(c.provenance, "made from no other commit (original data)")),
    section("Subvenance", refs(c.subvenance, "no commit made from it yet")),
  );
  const against = h("input", {
    id: "diff-against",
    name: "against",
    placeholder: c.parent ? `${repo}@${short(c.parent)}` : "repo@ref",
    "aria-label": "compare with (repo@ref)",
  });
  const changes = h("div", {});
  const show = async () => {
    const old = against.value.trim();
    const query = old ? `&old=${enc(old.includes("@") ? old + ":/" : `${repo}@${old}:/`)}` : "";
    const list = paged(
      (offset, limit) =>
        get(`/repos/${enc(repo)}/commits/${enc(c.id)}/diff/?offset=${offset}&limit=${limit}${query}`),
      (entries) =>
        table(
          null,
          ["Path", "Change", "Old size", "New size"],
          entries.map((d) => [
            d.change === "removed" ? d.path : link(d.path, "repo", repo, c.id, ...d.path.split("/").filter((p) => p)),
            h("span", { class: `change-${d.change}` }, d.change),
            size(d.old_size),
            size(d.new_size),
          ]),
        ),
    );
    changes.replaceChildren(list.box);
    await list.load();
  };
  main.append(
    section(
      "Changes",
      h(
        "form",
        {
          class: "inline",
          onsubmit: (event) => {
            event.preventDefault();
            show();
          },
        },
        h("label", { for: "diff-against" }, "Compare with "),
        against,
        h("button", { type: "submit" }, "Compare"),
      ),
      changes,
    ),
  );
  await show();
}

function refs(items, none) {
  if (!items.length) {
    return h("p", {}, none);
  }
  return h(
    "ul",
    {},
    items.map((text) => {
      const [repo, id] = text.split("@");
      return h("li", {}, id ? link(text, "commit", repo, id) : text);
    }),
  );
}
