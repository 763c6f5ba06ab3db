/* The cart example's console page: products, carts by status, and a form to shop.
 * Registered through chronik.registerApp: the video and bank pages follow the same pattern
 * (static/apps/video.js, static/apps/bank.js, with routers server/routes/video.py and bank.py). */
"use strict";

chronik.registerApp("cart", async (el) => {
  const { api, h, euros, ago, fmtTime, toast, every, errorBox, pageHead, streamLink } = chronik;
  const products = h("div", {});
  const carts = h("div", {});
  const cartId = h("input", { type: "text", value: "my-cart", "aria-label": "cart id", "data-testid": "cart-id" });
  const sku = h("select", { "aria-label": "product", "data-testid": "cart-sku" });
  const quantity = h("input", { type: "number", min: 1, value: 1, "aria-label": "quantity" });
  const add = h("button", { type: "button", "data-testid": "cart-add" }, "Add to cart");
  el.append(
    pageHead("Cart", "An example application: a shopping cart whose checkout uses the prices of the moment. Lists come from the carts_by_status and product_prices projections."),
    h("div", { class: "panel" }, h("h2", {}, "Shop"),
      h("div", { class: "inline-form" }, h("label", {}, "Cart ", cartId), h("label", {}, "Product ", sku),
        h("label", {}, "Qty ", quantity), add)),
    h("div", { class: "grid-2 wide-left" },
      h("div", { class: "panel" }, h("h2", {}, "Carts"), carts),
      h("div", { class: "panel" }, h("h2", {}, "Products"), products)));

  add.addEventListener("click", async () => {
    try {
      const cart = await api(`/api/cart/carts/${encodeURIComponent(cartId.value.trim())}/items`,
        { method: "POST", body: { sku: sku.value, quantity: Number(quantity.value) || 1 } });
      toast(`${cart.stream} is at version ${cart.version}`);
    } catch (error) { toast(error.detail || error.message); }
    load();
  });

  const checkout = async (id) => {
    try {
      const cart = await api(`/api/cart/carts/${encodeURIComponent(id)}/checkout`, { method: "POST" });
      toast(`checked out ${cart.stream}: ${euros(cart.state.total_cents)}`);
    } catch (error) { toast(error.detail || error.message); }
    load();
  };

  const load = async () => {
    try {
      const [{ products: items }, { carts: list }] = await Promise.all([api("/api/cart/products"), api("/api/cart/carts?limit=30")]);
      const chosen = sku.value;
      sku.replaceChildren(...items.map((p) => h("option", { value: p.sku, text: `${p.name || p.sku} (${euros(p.price_cents)})` })));
      if (chosen) sku.value = chosen;
      products.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "product-table" },
        h("thead", {}, h("tr", {}, h("th", { text: "Product" }), h("th", { class: "num", text: "Price" }), h("th", { text: "Updated" }))),
        h("tbody", {}, items.map((p) => h("tr", {},
          h("td", {}, streamLink(`product-${p.sku}`), h("div", { class: "muted", text: p.name || "" })),
          h("td", { class: "num", text: euros(p.price_cents) }),
          h("td", { class: "muted nowrap", title: fmtTime(p.updated_at), text: p.updated_at ? ago(p.updated_at) : "–" })))))));
      carts.replaceChildren(list.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "cart-table" },
        h("thead", {}, h("tr", {}, ["Cart", "Status", "Items", "Total", "Updated", ""].map((t, i) => h("th", { class: i === 2 || i === 3 ? "num" : "", text: t })))),
        h("tbody", {}, list.map((c) => h("tr", { "data-cart": c.cart_id },
          h("td", {}, streamLink(`cart-${c.cart_id}`)),
          h("td", {}, h("span", { class: c.status === "open" ? "badge info" : "badge ok", text: c.status.replace("_", " ") })),
          h("td", { class: "num", text: c.items }),
          h("td", { class: "num nowrap", text: euros(c.total_cents) }),
          h("td", { class: "muted nowrap", text: ago(c.updated_at) }),
          h("td", {}, c.status === "open" ? h("button", { type: "button", class: "small nowrap", "data-testid": "cart-checkout", onclick: () => checkout(c.cart_id) }, "Check out") : null))))))
        : h("div", { class: "empty", text: "No cart yet: add an item above." }));
    } catch (error) { carts.replaceChildren(errorBox(error)); }
  };
  await load();
  every(2000, load);
});
