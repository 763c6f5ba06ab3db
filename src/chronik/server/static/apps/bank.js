/* The bank example's console page: accounts, a balance-over-time chart, the time machine, transfers.
 *
 * Every form keeps its command id until the command succeeds: pressing a button twice (or again
 * after a timeout) sends the same command, which the bank acknowledges instead of moving money twice.
 * The page polls every two seconds, so transfers moved by the process manager show up on their own. */
"use strict";

chronik.registerApp("bank", async (el, params) => {
  const { api, h, euros, ago, fmtTime, toast, every, errorBox, pageHead, streamLink, lineChart } = chronik;
  const newCommandId = () => `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const toCents = (text) => Math.round(parseFloat(String(text).replace(",", ".")) * 100);
  const statusBadge = (status) => h("span", {
    class: `badge ${{ open: "ok", completed: "ok", frozen: "warn", initiated: "info", debited: "info", rejected: "bad", compensated: "warn", closed: "" }[status] ?? ""}`,
    text: status,
  });
  let selected = params.get("account");

  // -- layout -------------------------------------------------------------------------------------
  const stats = h("div", { class: "stats", "data-testid": "bank-stats" });
  const accountsBox = h("div", {}, h("div", { class: "empty", text: "Loading…" }));
  const detail = h("div", { "data-testid": "account-detail" });
  const transfersBox = h("div", {});

  const field = (label, input) => h("label", { class: "field" }, h("span", { text: label }), input);
  const openId = h("input", { type: "text", placeholder: "e.g. dora", "aria-label": "new account id", "data-testid": "open-id" });
  const openOwner = h("input", { type: "text", placeholder: "Dora", "aria-label": "owner", "data-testid": "open-owner" });
  const openLimit = h("input", { type: "number", min: 0, step: "0.01", value: "0", "aria-label": "overdraft limit (EUR)" });
  const openButton = h("button", { type: "button", "data-testid": "open-account" }, "Open account");

  const moveAccount = h("select", { "aria-label": "account", "data-testid": "money-account" });
  const moveAmount = h("input", { type: "number", min: "0.01", step: "0.01", value: "50.00", "aria-label": "amount (EUR)", "data-testid": "money-amount" });
  const moveNote = h("input", { type: "text", placeholder: "description", "aria-label": "description" });
  const depositButton = h("button", { type: "button", "data-testid": "deposit" }, "Deposit");
  const withdrawButton = h("button", { type: "button", class: "ghost", "data-testid": "withdraw" }, "Withdraw");

  const fromAccount = h("select", { "aria-label": "from account", "data-testid": "transfer-from" });
  const toAccount = h("select", { "aria-label": "to account", "data-testid": "transfer-to" });
  const transferAmount = h("input", { type: "number", min: "0.01", step: "0.01", value: "25.00", "aria-label": "transfer amount (EUR)", "data-testid": "transfer-amount" });
  const transferRef = h("input", { type: "text", placeholder: "reference", "aria-label": "reference" });
  const transferButton = h("button", { type: "button", "data-testid": "transfer-send" }, "Send transfer");

  el.append(
    pageHead("Bank", "An example application: a bank kept as a ledger of events. Balances are replayed from each account's events; transfers are moved step by step by a process manager."),
    stats,
    h("div", { class: "grid-2 wide-left" },
      h("div", { class: "panel" }, h("h2", {}, "Accounts"), h("div", { class: "muted small-note", text: "Click an account to see its balance over time and its statement." }), accountsBox),
      h("div", { class: "panel forms" },
        h("h2", {}, "Move money"),
        h("div", { class: "form-grid" }, field("Account", moveAccount), field("Amount (€)", moveAmount), field("Description", moveNote),
          h("div", { class: "form-actions" }, depositButton, withdrawButton)),
        h("h2", {}, "Transfer"),
        h("div", { class: "form-grid" }, field("From", fromAccount), field("To", toAccount), field("Amount (€)", transferAmount), field("Reference", transferRef),
          h("div", { class: "form-actions" }, transferButton)),
        h("h2", {}, "Open an account"),
        h("div", { class: "form-grid" }, field("Account id", openId), field("Owner", openOwner), field("Overdraft limit (€)", openLimit),
          h("div", { class: "form-actions" }, openButton)))),
    detail,
    h("div", { class: "panel" }, h("h2", {}, "Recent transfers"), transfersBox));

  // -- commands (each keeps its command id until it succeeds) -------------------------------------
  const commands = { open: newCommandId(), money: newCommandId(), transfer: newCommandId() };
  const send = async (what, call) => {
    try {
      const result = await call();
      commands[what] = newCommandId();
      return result;
    } catch (error) { toast(error.detail || error.message); return null; }
  };
  openButton.addEventListener("click", async () => {
    const id = openId.value.trim();
    const result = await send("open", () => api("/api/bank/accounts", { method: "POST", body: {
      account_id: id, owner: openOwner.value.trim() || id, command_id: commands.open,
      overdraft_limit_cents: Math.max(0, toCents(openLimit.value) || 0) } }));
    if (result) { toast(`account ${id} opened`); selected = id; openId.value = ""; openOwner.value = ""; books = null; load(); }
  });
  const moveMoney = async (kind) => {
    const account = moveAccount.value;
    const result = await send("money", () => api(`/api/bank/accounts/${encodeURIComponent(account)}/${kind}`, { method: "POST", body: {
      amount_cents: toCents(moveAmount.value), command_id: commands.money,
      description: moveNote.value.trim() || (kind === "deposits" ? "deposit (console)" : "withdrawal (console)") } }));
    if (result) {
      toast(`${kind === "deposits" ? "deposited" : "withdrew"} ${euros(toCents(moveAmount.value))}${result.already_done ? " (already done)" : ""}: ${account} holds ${euros(result.account.balance_cents)}`);
      selected = account; load();
    }
  };
  depositButton.addEventListener("click", () => moveMoney("deposits"));
  withdrawButton.addEventListener("click", () => moveMoney("withdrawals"));
  transferButton.addEventListener("click", async () => {
    const transferId = commands.transfer;
    const result = await send("transfer", () => api("/api/bank/transfers", { method: "POST", body: {
      transfer_id: transferId, source: fromAccount.value, target: toAccount.value,
      amount_cents: toCents(transferAmount.value), reference: transferRef.value.trim() } }));
    if (result) { toast(`transfer ${transferId} initiated: the process manager moves the money`); load(); }
  });

  // -- one account: chart, time machine, statement --------------------------------------------------
  const asOfInput = h("input", { type: "datetime-local", step: 1, "aria-label": "as of", "data-testid": "asof-time" });
  const asOfMode = h("select", { "aria-label": "kind of time", "data-testid": "asof-mode" },
    h("option", { value: "occurred_at", text: "business time (what was true then)" }),
    h("option", { value: "recorded_at", text: "recorded time (what the bank knew then)" }));
  const asOfButton = h("button", { type: "button", class: "small", "data-testid": "asof-go" }, "Show balance");
  const asOfResult = h("div", { class: "asof-result", "data-testid": "asof-result" });
  asOfButton.addEventListener("click", async () => {
    if (!selected || !asOfInput.value) { asOfResult.replaceChildren(h("span", { class: "muted", text: "Pick a moment first." })); return; }
    const moment = new Date(`${asOfInput.value}Z`).toISOString();
    try {
      const balance = await api(`/api/bank/accounts/${encodeURIComponent(selected)}?${asOfMode.value}=${encodeURIComponent(moment)}`);
      asOfResult.replaceChildren(h("b", { text: euros(balance.balance_cents) }),
        h("span", { class: "muted", text: ` by ${balance.basis} at ${fmtTime(moment)} (replayed to version ${balance.version})` }));
    } catch (error) {
      asOfResult.replaceChildren(error.status === 404
        ? h("span", { class: "muted", text: `The account did not exist yet at ${fmtTime(moment)}.` }) : errorBox(error));
    }
  });
  const asOfPanel = h("div", { class: "asof" }, h("h3", {}, "Time machine"),
    h("div", { class: "inline-form" }, asOfInput, h("span", { class: "muted", text: "UTC" }), asOfMode, asOfButton), asOfResult);

  let drawnFor = null;
  let showAllLines = false;
  let renderedKey = null;
  const showAccount = async () => {
    if (!selected) {
      detail.replaceChildren(h("div", { class: "panel" }, h("div", { class: "empty", text: "Select an account above to see its balance over time." })));
      drawnFor = null;
      return;
    }
    let balance, statement, months;
    try {
      const id = encodeURIComponent(selected);
      [balance, statement, { months }] = await Promise.all([
        api(`/api/bank/accounts/${id}`), api(`/api/bank/accounts/${id}/statement`), api(`/api/bank/accounts/${id}/months`)]);
    } catch (error) { detail.replaceChildren(h("div", { class: "panel" }, errorBox(error))); return; }
    const key = `${selected}/${balance.version}/${showAllLines}/${drawnFor}`;
    if (key === renderedKey) return;  // nothing new: leave the chart and the statement as they are
    renderedKey = key;
    const lines = statement.lines;
    const t0 = lines.length ? new Date(lines[0].occurred_at).getTime() : 0;
    const points = lines.map((l) => [(new Date(l.occurred_at).getTime() - t0) / 86_400_000, l.balance_cents / 100]);
    const chart = lines.length ? lineChart(points, {
      height: 190, testid: "balance-chart", dots: true, padLeft: 84, yLabel: "balance, by business time",
      titles: lines.map((l) => `${fmtTime(l.occurred_at).slice(0, 10)} · ${l.description} · ${euros(l.amount_cents)} → ${euros(l.balance_cents)}`),
      xLabels: [fmtTime(lines[0].occurred_at).slice(0, 10), fmtTime(lines[lines.length - 1].occurred_at).slice(0, 10)],
      yFormat: (v) => euros(Math.round(v * 100)),
    }) : h("div", { class: "empty", text: "No money has moved in this account yet." });
    const shownLines = showAllLines ? [...lines].reverse() : [...lines].reverse().slice(0, 12);
    const moreLines = lines.length > shownLines.length
      ? h("button", { type: "button", class: "small ghost more", onclick: () => { showAllLines = true; showAccount(); } }, `Show all ${lines.length} entries`)
      : null;
    const statementTable = h("div", { class: "table-wrap" }, h("table", { "data-testid": "statement-table" },
      h("thead", {}, h("tr", {}, ["Business date", "Entry", "Amount", "Balance", "Recorded"].map((t, i) => h("th", { class: i === 2 || i === 3 ? "num" : "", text: t })))),
      h("tbody", {}, shownLines.map((l) => h("tr", {},
        h("td", { class: "nowrap", text: fmtTime(l.occurred_at).slice(0, 16) }),
        h("td", {}, l.description, new Date(l.recorded_at) - new Date(l.occurred_at) > 86_400_000
          ? h("span", { class: "badge warn", title: `entered ${fmtTime(l.recorded_at)}`, text: "entered late" }) : null),
        h("td", { class: `num nowrap ${l.amount_cents < 0 ? "neg" : "pos"}`, text: `${l.amount_cents > 0 ? "+" : ""}${euros(l.amount_cents)}` }),
        h("td", { class: "num nowrap", text: euros(l.balance_cents) }),
        h("td", { class: "muted nowrap", title: fmtTime(l.recorded_at), text: ago(l.recorded_at) }))))));
    const monthTable = months.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "month-table" },
      h("thead", {}, h("tr", {}, ["Month", "Credits", "Debits", "Closing"].map((t, i) => h("th", { class: i ? "num" : "", text: t })))),
      h("tbody", {}, [...months].reverse().slice(0, 12).map((m) => h("tr", {},
        h("td", { text: m.month }), h("td", { class: "num", text: euros(m.credits_cents) }),
        h("td", { class: "num", text: euros(m.debits_cents) }), h("td", { class: "num", text: euros(m.closing_balance_cents) }))))))
      : h("div", { class: "muted", text: "No month yet." });
    if (drawnFor !== selected) showAllLines = false;
    if (!asOfInput.value || drawnFor !== selected) {
      const first = lines.length ? new Date(lines[0].occurred_at) : new Date();
      asOfInput.value = first.toISOString().slice(0, 19);
      asOfResult.replaceChildren();
    }
    drawnFor = selected;
    detail.replaceChildren(h("div", { class: "panel", "data-account": selected },
      h("div", { class: "page-head" },
        h("div", {}, h("h2", {}, `${balance.account_id} `, statusBadge(balance.status)),
          h("div", { class: "muted" }, streamLink(`account-${balance.account_id}`), ` · version ${balance.version}`,
            balance.overdraft_limit_cents ? ` · overdraft limit ${euros(balance.overdraft_limit_cents)}` : "")),
        h("div", { class: "actions" }, h("div", { class: "stat" },
          h("b", { "data-testid": "account-balance", text: euros(balance.balance_cents) }), h("span", { text: "balance now" })))),
      h("h3", {}, "Balance over time"), chart, asOfPanel,
      h("div", { class: "grid-2 wide-left" },
        h("div", {}, h("h3", {}, `Statement (${lines.length} entries, newest first)`), statementTable, moreLines),
        h("div", {}, h("h3", {}, "Months (by business time)"), monthTable))));
  };

  // -- lists ---------------------------------------------------------------------------------------
  const fillSelect = (select, accounts, fallbackIndex) => {
    const chosen = select.value;
    select.replaceChildren(...accounts.map((a) => h("option", { value: a.account_id, text: `${a.account_id} (${a.owner})` })));
    if (chosen && accounts.some((a) => a.account_id === chosen)) select.value = chosen;
    else if (accounts.length > fallbackIndex) select.value = accounts[fallbackIndex].account_id;
  };

  const showTrail = async (id, row) => {
    const next = row.nextSibling;
    if (next && next.classList && next.classList.contains("trail-row")) { next.remove(); return; }
    try {
      const { trail } = await api(`/api/bank/transfers/${encodeURIComponent(id)}`);
      row.after(h("tr", { class: "trail-row" }, h("td", { colspan: 6 },
        h("div", { class: "muted", text: "Audit trail (every event this transfer caused, by its correlation id):" }),
        h("ol", { class: "trail", "data-testid": "transfer-trail" }, trail.map((e) => h("li", {},
          h("span", { class: "mono", text: `#${e.global_position} ` }), streamLink(e.stream), " ", h("b", { text: e.type }),
          e.actor ? h("span", { class: "muted", text: ` by ${e.actor}` }) : null))))));
    } catch (error) { toast(error.detail || error.message); }
  };

  // The books are recomputed from the whole log on the server: ask every fifth round (10 s), not every one.
  let books = null;
  let round = 0;
  const load = async () => {
    let accounts, totals, transfers;
    try {
      [{ accounts, total_balance_cents: totals }, { transfers }, books] = await Promise.all([
        api("/api/bank/accounts"), api("/api/bank/transfers?limit=15"),
        books && round % 5 ? books : api("/api/bank/ledger")]);
      round += 1;
    } catch (error) { accountsBox.replaceChildren(errorBox(error)); return; }
    stats.replaceChildren(
      h("div", { class: "stat" }, h("b", { "data-testid": "bank-account-count", text: accounts.length }), h("span", { text: "accounts" })),
      h("div", { class: "stat" }, h("b", { text: euros(totals) }), h("span", { text: "held in all accounts" })),
      h("div", { class: "stat" }, h("b", { text: euros(books.in_transit_cents) }), h("span", { text: "in transit" })),
      h("div", { class: "stat" }, h("b", { "data-testid": "books-status" }, h("span", { class: books.ok ? "badge ok" : "badge bad", text: books.ok ? "books balance" : "books do NOT balance" })),
        h("span", { title: "balances + in transit = deposits − withdrawals, nobody overdrawn, the projection agrees with the log", text: "checked from the log" })));
    if (!selected && accounts.length) selected = accounts[0].account_id;
    accountsBox.replaceChildren(accounts.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "account-table" },
      h("thead", {}, h("tr", {}, ["Account", "Owner", "Status", "Balance", "Overdraft", "Updated"].map((t, i) => h("th", { class: i === 3 || i === 4 ? "num" : "", text: t })))),
      h("tbody", {}, accounts.map((a) => h("tr", { class: `clickable${a.account_id === selected ? " selected" : ""}`, "data-account": a.account_id,
        onclick: () => { selected = a.account_id; history.replaceState(null, "", `#/apps/bank?account=${encodeURIComponent(selected)}`); load(); } },
      h("td", { class: "mono", text: a.account_id }),
      h("td", { text: a.owner }),
      h("td", {}, statusBadge(a.status)),
      h("td", { class: `num nowrap${a.balance_cents < 0 ? " neg" : ""}`, text: euros(a.balance_cents) }),
      h("td", { class: "num nowrap muted", text: a.overdraft_limit_cents ? euros(a.overdraft_limit_cents) : "–" }),
      h("td", { class: "muted nowrap", title: fmtTime(a.updated_at), text: ago(a.updated_at) }))))))
      : h("div", { class: "empty", text: "No account yet: open one on the right." }));
    fillSelect(moveAccount, accounts, 0);
    fillSelect(fromAccount, accounts, 0);
    fillSelect(toAccount, accounts, 1);
    transfersBox.replaceChildren(transfers.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "transfer-table" },
      h("thead", {}, h("tr", {}, ["Transfer", "From → to", "Amount", "Status", "Reference", "Updated"].map((t, i) => h("th", { class: i === 2 ? "num" : "", text: t })))),
      h("tbody", {}, transfers.map((t) => {
        const row = h("tr", { class: "clickable", "data-transfer": t.transfer_id, title: "show the audit trail" },
          h("td", { class: "mono nowrap", text: t.transfer_id }),
          h("td", { class: "nowrap", text: `${t.source} → ${t.target}` }),
          h("td", { class: "num nowrap", text: euros(t.amount_cents) }),
          h("td", { title: t.reason || "" }, statusBadge(t.status), t.reason ? h("div", { class: "muted small-note", text: t.reason }) : null),
          h("td", { class: "muted", text: t.reference || "" }),
          h("td", { class: "muted nowrap", text: ago(t.updated_at) }));
        row.addEventListener("click", () => showTrail(t.transfer_id, row));
        return row;
      }))))
      : h("div", { class: "empty", text: "No transfer yet." }));
    await showAccount();
  };
  await load();
  every(2000, () => {
    // Keep still while the reader looks at an opened audit trail or types in the time machine.
    if (!transfersBox.querySelector(".trail-row") && document.activeElement !== asOfInput) load();
  });
});
