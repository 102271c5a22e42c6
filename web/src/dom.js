// A few lines of DOM building, so pages read as the markup they make.

/** An element: `h("label", { for: "x" }, "text", child)`. `on*` attributes are listeners. */
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "polyline", "line", "text", "title", "desc", "rect", "path", "g", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "testid") el.setAttribute("data-testid", value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A labelled field: a visible label tied to its input, and an optional hint. */
export function field(id, label, input, hint) {
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", {}, h("label", { for: id }, label), hint ? h("p", { class: "hint", id: hintId }, hint) : null, input);
}
