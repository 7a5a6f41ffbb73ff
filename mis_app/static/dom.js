// Small helpers shared by the page's modules. Text from the MAP or the zip only ever goes into
// the page as text (textContent), never as markup.

export const $ = (id) => document.getElementById(id);

// el("p", { className: "hint" }, "text", child): properties set on the element, then children.
export function el(tag, properties = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name.startsWith("aria-") || name === "role" || name === "scope") element.setAttribute(name, value);
    else element[name] = value;
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

export function formatBytes(n) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) { n /= 1000; unit++; }
  return `${unit ? n.toFixed(1) : n} ${units[unit]}`;
}

export const plural = (n, one, many = `${one}s`) => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;

// A list shown `step` items at a time, with a button for the next ones; `make(item, index)`
// builds one item's element. Keeps long listings cheap until someone asks for more.
export function pagedList(container, button, items, step, make, noun) {
  let shown = 0;
  const more = () => {
    const next = items.slice(shown, shown + step);
    container.append(...next.map((item, i) => make(item, shown + i)));
    shown += next.length;
    const left = items.length - shown;
    button.hidden = left <= 0;
    button.textContent = `Show ${plural(Math.min(step, left), "more " + noun, "more " + noun + "s")} (${left.toLocaleString("en")} not shown)`;
  };
  button.onclick = () => {
    const first = shown;
    more();
    // keyboard users go on from the first new item, or stay on the button while it is there
    const item = container.children[first];
    const focusable = item?.matches("button, summary, a") ? item : item?.querySelector("button, summary, a");
    if (focusable) focusable.focus();
    else if (button.hidden) container.focus();
  };
  more();
}
