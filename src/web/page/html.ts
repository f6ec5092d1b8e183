// The two HTML documents the server sends. The dashboard is a shell: its
// content is drawn by the bundle (dashboard.ts) from the API and the live view.

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1b1f24; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #1f3a5f; color: #fff; }
header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
main { padding: 1rem 1.2rem; display: grid; gap: 1rem; }
section { background: #fff; border: 1px solid #d8dde3; border-radius: 6px; padding: .8rem 1rem; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eceff2; vertical-align: top; }
th { font-weight: 600; font-size: .85rem; color: #4a5561; }
button { font: inherit; padding: .2rem .6rem; margin: 0 .2rem .2rem 0; border: 1px solid #9aa5b1; border-radius: 4px; background: #fff; cursor: pointer; }
button.danger { border-color: #b42318; color: #b42318; }
button:disabled { opacity: .5; cursor: default; }
.state { font-weight: 600; }
.state-running { color: #067647; } .state-active { color: #b54708; } .state-inactive { color: #4a5561; }
.ok { color: #067647; } .bad { color: #b42318; } .warn { color: #b54708; }
.progress { font-size: .85rem; color: #4a5561; }
#error { color: #b42318; white-space: pre-wrap; }
form.login { max-width: 22rem; margin: 4rem auto; display: grid; gap: .6rem; }
input { font: inherit; padding: .3rem; }
`;

function page(title: string, body: string, script = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><style>${STYLE}</style>${script}</head>
<body>${body}</body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export function loginHtml(problem?: string): string {
  return page(
    'ZynClone: log in',
    `<form class="login" method="post" action="/login">
<h1>ZynClone</h1>
<label for="token">Admin token (in var/lib/zynclone/web/admin-token under the ZynClone root)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
${problem ? `<p id="error" role="alert">${escapeHtml(problem)}</p>` : ''}
</form>`,
  );
}

export function dashboardHtml(): string {
  return page(
    'ZynClone',
    `<header><h1>ZynClone</h1><span id="live" title="live view">connecting...</span>
<form method="post" action="/logout" id="logout"><button type="submit">Log out</button></form></header>
<main>
<p id="error" role="alert"></p>
<section><h2>Virtual machines and their clones</h2><table id="vms"><thead><tr>
<th>VM</th><th>Domain</th><th>Clone</th><th>State</th><th>Kind</th><th>Lockdown</th><th>Operation</th><th>Actions</th>
</tr></thead><tbody></tbody></table></section>
<section><h2>Monitors</h2><table id="daemons"><thead><tr><th>Daemon</th><th>Version</th><th>Heartbeat</th></tr></thead><tbody></tbody></table></section>
<section><h2>Doctor <button id="run-doctor">Run again</button></h2><div id="doctor">not run yet</div></section>
</main>`,
    '<script type="module" src="/dashboard.js"></script>',
  );
}
