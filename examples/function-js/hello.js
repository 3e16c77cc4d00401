// hello, a wasi:http function in JavaScript: every request gets a plain-text greeting that
// names the method and path it was asked with.
//
// componentize-js turns this module into a component that exports
// wasi:http/incoming-handler@0.2.10 (the world `hello` in wit/world.wit), with the fetch-event
// API StarlingMonkey gives service workers; build.sh shows how.

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const text = `hello from javascript: ${request.method} ${url.pathname}${url.search}\n`;
  return new Response(text, {
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
}
