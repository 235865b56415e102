// Live updates for the operator console. Every element with data-live="<url>" opens one
// EventSource (Server-Sent Events) to that URL. Events:
//   row   {id, html, prepend}: replace the element with that id; or, with prepend, add the
//         row at the top of the [data-live-rows] element inside (a new order, say);
//   html  {id, html}: replace the inner HTML of the element with that id;
//   end   the feed is final (a finished lending order): close it.
// A [data-live-status] element inside (role="status") says whether the feed is live and
// what changed last. Pages work without this script; it only saves the reload.
(() => {
  const fragment = (markup) => {
    const t = document.createElement('template');
    t.innerHTML = markup.trim();
    return t.content.firstElementChild;
  };
  for (const host of document.querySelectorAll('[data-live]')) {
    const statusLine = host.querySelector('[data-live-status]');
    const say = (text) => { if (statusLine) statusLine.textContent = text; };
    const feed = new EventSource(host.dataset.live);
    feed.onopen = () => say('Live updates on.');
    feed.onerror = () => say(feed.readyState === EventSource.CLOSED ? 'Live updates stopped: reload the page.' : 'Live updates reconnecting…');
    const changed = (d) => { if (d.announce) say(`Live updates on. Last change: ${d.announce}`); };
    feed.addEventListener('row', (e) => {
      const d = JSON.parse(e.data);
      const old = document.getElementById(d.id);
      if (old) old.replaceWith(fragment(d.html));
      else if (d.prepend) {
        const rows = host.querySelector('[data-live-rows]');
        if (!rows) return;
        rows.prepend(fragment(d.html));
        for (const empty of host.querySelectorAll('[data-live-empty]')) empty.remove();
      } else return;
      changed(d);
    });
    feed.addEventListener('html', (e) => {
      const d = JSON.parse(e.data);
      const el = document.getElementById(d.id);
      if (el) { el.innerHTML = d.html; changed(d); }
    });
    feed.addEventListener('end', () => { feed.close(); say('Final: no more changes.'); });
  }
})();
