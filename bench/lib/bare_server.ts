// Limit B: the cheapest HTTP answer Deno.serve can give on this machine (reads the body, answers 200).
// Listens where DENO_SERVE_ADDRESS says, like the function under test.
Deno.serve(async (req) => {
  await req.arrayBuffer();
  return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
});
