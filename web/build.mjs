// Builds the app into dist/: one bundle (app.js), its page, style and icon. The node
// compiles dist/ into its binary (crates/cercle-server/src/web.rs), and CI checks that
// `npm ci && npm run build` reproduces the committed dist/ byte for byte, so what the
// node serves is always what src/ says. esbuild's output depends only on its inputs and
// version (pinned in package-lock.json): no timestamps, no absolute paths.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: ["chrome120", "firefox130", "safari17"],
  minify: true,
  legalComments: "none",
  charset: "utf8",
  outfile: "dist/app.js",
  logLevel: "warning",
});
for (const file of ["index.html", "app.css", "favicon.svg"]) {
  copyFileSync(`src/${file}`, `dist/${file}`);
}
