// The results column's guard (sdedit/studio/column_guard.py, ColumnGuard): gr.HTML's js_on_load, run once per
// mount with element, trigger, props and watch. The names of the props are never written in quotes here:
// gr.HTML would take a quoted name for a custom event's name.
//
// props.value is the tab whose result the column holds; the tab in front is the selected button of the page's
// tabs (props.tabs_id). Whenever the two differ, the column (props.column_id) takes the class props.other_tab,
// which hides its parts that belong to a tab (the page's CSS, column_guard.CSS). A tab switch hides them until
// its own answer fills the column; an answer that lands after the visitor has moved on (props.value changed to
// another tab than the one in front) hides them and asks the server for the front tab's panel (`stale`). Every
// answer that fills the column sets the guard first (its first output, which Gradio applies first), so the
// check that runs on each change of the column's page, before the browser paints it, already knows whose the
// new content is.

const LATE_MS = 150; // an answer that switches the tab sets both: let it finish before calling the guard stale
let asked = null; // the tab whose panel the guard has asked for and not yet got

const front = () =>
  document.getElementById(props.tabs_id)?.querySelector('button[data-tab-id][aria-selected=true]')?.dataset.tabId;
const other = () => {
  const tab = front();
  return Boolean(tab && props.value && props.value !== tab);
};
const mark = () => {
  const column = document.getElementById(props.column_id);
  const hide = other();
  if (column) column.classList.toggle(props.other_tab, hide);
  if (!hide) asked = null;
  return hide;
};
const askIfStill = () => {
  const tab = front();
  if (mark() && asked !== tab) {
    asked = tab;
    trigger('stale', {front: tab});
  }
};

watch(Object.keys(props), () => {
  if (mark()) setTimeout(askIfStill, LATE_MS);
});
new MutationObserver(mark).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['aria-selected']});
const column = document.getElementById(props.column_id);
if (column) new MutationObserver(mark).observe(column, {subtree: true, childList: true, attributes: true, characterData: true});
mark();
