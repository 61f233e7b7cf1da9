// Gateway configuration pages: confirmations, editable rows, the failover order (drag and
// drop, or the up/down buttons), copy buttons, and htmx panels that show refusals.
// Every listener is delegated from the document, so content swapped in by htmx works too.
(function () {
  "use strict";

  const ORDER = "[data-order]";
  const POOL = "[data-order-pool]";
  const LISTS = ORDER + ", " + POOL;
  const SHOWN_REFUSALS = [400, 404, 409, 422];
  let dragged = null;

  // Confirm before a destructive form is sent.
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Rows of headers and rules: a <template id="NAME-template"> fills <tbody id="NAME-rows">.
  function addRow(name) {
    const template = document.getElementById(name + "-template");
    const rows = document.getElementById(name + "-rows");
    if (!template || !rows) return;
    const row = template.content.firstElementChild.cloneNode(true);
    rows.appendChild(row);
    const first = row.querySelector("input:not([type=hidden]), select");
    if (first) first.focus();
  }

  // The failover order: only items in the ordered list submit their resource_ids input.
  function settle(item) {
    const input = item.querySelector("input[name=resource_ids]");
    if (input) input.disabled = !item.parentElement.matches(ORDER);
  }

  function announce(item) {
    const scope = item.closest("fieldset") || document;
    const status = scope.querySelector("[data-order-status]");
    if (!status) return;
    const list = item.parentElement;
    if (list.matches(ORDER)) {
      const position = Array.prototype.indexOf.call(list.children, item) + 1;
      status.textContent = item.dataset.name + " is number " + position + " of " + list.children.length;
    } else {
      status.textContent = item.dataset.name + " is no longer in the order";
    }
  }

  function move(button) {
    const item = button.closest("li");
    const scope = item.closest("fieldset") || document;
    const order = scope.querySelector(ORDER);
    const pool = scope.querySelector(POOL);
    const how = button.dataset.move;
    let focus = button;
    if (how === "up" && item.previousElementSibling) {
      item.parentElement.insertBefore(item, item.previousElementSibling);
    } else if (how === "down" && item.nextElementSibling) {
      item.parentElement.insertBefore(item.nextElementSibling, item);
    } else if (how === "out" && pool) {
      pool.appendChild(item);
      focus = item.querySelector("[data-move=in]");
    } else if (how === "in" && order) {
      order.appendChild(item);
      focus = item.querySelector("[data-move=out]");
    }
    settle(item);
    announce(item);
    if (focus) focus.focus();
  }

  function copy(button) {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
      return;
    }
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (document.execCommand("copy")) done();
  }

  document.addEventListener("click", function (event) {
    const target = event.target;
    if (!(target instanceof Element)) return;
    const add = target.closest("[data-add-row]");
    if (add) return addRow(add.dataset.addRow);
    const remove = target.closest("[data-remove-row]");
    if (remove) return remove.closest("tr").remove();
    const mover = target.closest("[data-move]");
    if (mover) return move(mover);
    const copier = target.closest("[data-copy]");
    if (copier) return copy(copier);
  });

  // Drag and drop between and within the two lists. The item moves while it is dragged,
  // before the item whose upper half is under the pointer, so the page shows the result.
  function itemBelow(list, y) {
    const items = list.querySelectorAll(":scope > li:not(.gw-dragging)");
    for (const item of items) {
      const box = item.getBoundingClientRect();
      if (y < box.top + box.height / 2) return item;
    }
    return null;
  }

  function clearOver() {
    document.querySelectorAll(".gw-over").forEach(function (list) { list.classList.remove("gw-over"); });
  }

  document.addEventListener("dragstart", function (event) {
    const item = event.target instanceof Element && event.target.closest("li[draggable]");
    if (!item || !item.parentElement.matches(LISTS)) return;
    dragged = item;
    item.classList.add("gw-dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", item.dataset.id);
  });

  document.addEventListener("dragover", function (event) {
    if (!dragged) return;
    const list = event.target instanceof Element && event.target.closest(LISTS);
    if (!list || (list.closest("fieldset") !== dragged.closest("fieldset"))) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    clearOver();
    list.classList.add("gw-over");
    const below = itemBelow(list, event.clientY);
    if (below !== dragged.nextElementSibling || dragged.parentElement !== list) {
      list.insertBefore(dragged, below);
    }
  });

  document.addEventListener("drop", function (event) {
    if (dragged && event.target instanceof Element && event.target.closest(LISTS)) {
      event.preventDefault();
    }
  });

  document.addEventListener("dragend", function () {
    if (!dragged) return;
    dragged.classList.remove("gw-dragging");
    settle(dragged);
    announce(dragged);
    dragged = null;
    clearOver();
  });

  // htmx leaves 4xx answers unswapped; these panels show the refusal they carry.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const detail = event.detail;
    if (SHOWN_REFUSALS.indexOf(detail.xhr.status) >= 0 && detail.target.closest("[data-gw-swap-errors]")) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
})();
