// A table kept in step with a watch: rows keyed by object (`tr[data-name]`, with the object's
// resourceVersion in `data-rv`, so any change is visible to tests), rendered once per
// list and then patched one row at a time (a changed cell's text or node is replaced; nothing
// else in the table is touched), so a thousand rows stay cheap. Must not: fetch anything.

/**
 * columns: [{ key, label, text(obj) → string }] or [{ key, label, create(td, obj), update(td, obj) }].
 * options: { name(obj) → row key, order(a, b) → sort of two objects, empty: text when no rows }.
 */
export class LiveTable {
  constructor(table, columns, options) {
    this.table = table;
    this.columns = columns;
    this.name = options.name;
    this.order = options.order || ((a, b) => (this.name(a) < this.name(b) ? -1 : this.name(a) > this.name(b) ? 1 : 0));
    this.rows = new Map(); // name → { tr, obj }
    this.sorted = []; // objects in display order
    this.filter = options.filter || (() => true);
    const head = table.createTHead().insertRow();
    for (const c of columns) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = c.label;
      if (c.hidden) th.className = 'sr-only';
      head.appendChild(th);
    }
    this.body = table.tBodies[0] || table.appendChild(document.createElement('tbody'));
    this.emptyText = options.empty || 'None.';
    this.empty = document.createElement('p');
    this.empty.className = 'empty';
    table.after(this.empty);
  }

  /** Every row anew (a list): one fragment, one insertion. */
  reset(items) {
    const kept = items.filter(this.filter).sort(this.order);
    const frag = document.createDocumentFragment();
    this.rows.clear();
    for (const obj of kept) {
      const tr = this.row(obj);
      this.rows.set(this.name(obj), { tr, obj });
      frag.appendChild(tr);
    }
    this.sorted = kept;
    this.body.replaceChildren(frag);
    this.showEmpty();
  }

  /** Watch events: [type, object] pairs. */
  apply(events) {
    for (const [type, obj] of events) {
      if (type === 'DELETED' || !this.filter(obj)) this.remove(obj);
      else this.upsert(obj);
    }
    this.showEmpty();
  }

  upsert(obj) {
    const name = this.name(obj);
    const have = this.rows.get(name);
    if (have) {
      const moved = this.order(have.obj, obj) !== 0;
      const at = this.position(have.obj);
      if (moved) this.sorted.splice(at, 1);
      else this.sorted[at] = obj;
      have.obj = obj;
      have.tr.dataset.rv = (obj.metadata && obj.metadata.resourceVersion) || '';
      this.columns.forEach((c, i) => this.fill(have.tr.cells[i], c, obj, false));
      if (moved) this.place(have.tr, obj);
      return;
    }
    const tr = this.row(obj);
    this.rows.set(name, { tr, obj });
    this.place(tr, obj);
  }

  remove(obj) {
    const name = this.name(obj);
    const have = this.rows.get(name);
    if (!have) return;
    this.sorted.splice(this.position(have.obj), 1);
    have.tr.remove();
    this.rows.delete(name);
  }

  /** Each row's object (for views that count or look things up). */
  objects() {
    return this.sorted;
  }

  /** Re-renders the columns whose text depends on time or on another source (ages, usage). */
  refresh(keys) {
    const cols = this.columns.map((c, i) => [c, i]).filter(([c]) => keys.includes(c.key));
    for (const { tr, obj } of this.rows.values()) {
      for (const [c, i] of cols) this.fill(tr.cells[i], c, obj, false);
    }
  }

  // Binary search of the display order.
  position(obj) {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order(this.sorted[mid], obj) < 0) lo = mid + 1;
      else hi = mid;
    }
    // Equal-ordered neighbours: find the very object by name.
    const name = this.name(obj);
    for (let i = lo; i < this.sorted.length && this.order(this.sorted[i], obj) === 0; i++) {
      if (this.name(this.sorted[i]) === name) return i;
    }
    return lo;
  }

  place(tr, obj) {
    const at = this.position(obj);
    this.sorted.splice(at, 0, obj);
    const next = this.sorted[at + 1];
    const before = next ? this.rows.get(this.name(next)) : null;
    this.body.insertBefore(tr, before ? before.tr : null);
  }

  row(obj) {
    const tr = document.createElement('tr');
    tr.dataset.name = this.name(obj);
    tr.dataset.rv = (obj.metadata && obj.metadata.resourceVersion) || '';
    for (const c of this.columns) {
      const td = document.createElement('td');
      td.dataset.col = c.key;
      this.fill(td, c, obj, true);
      tr.appendChild(td);
    }
    return tr;
  }

  fill(td, c, obj, fresh) {
    if (c.create) {
      if (fresh) c.create(td, obj);
      else if (c.update) c.update(td, obj);
      return;
    }
    const text = String(c.text(obj));
    if (td.textContent !== text) td.textContent = text;
  }

  showEmpty() {
    this.empty.textContent = this.rows.size ? '' : this.emptyText;
    this.empty.hidden = this.rows.size > 0;
  }
}
