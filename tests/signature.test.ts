import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  chatwootSignatureHeaders,
  ChatwootSignatureVerifier,
  checkTimestamp,
  signChatwoot,
  timingSafeEqualStrings,
} from "../supabase/functions/_shared/signature.ts";
import { dbIndependentTest } from "./_db.ts";

const body = '{"event":"message_created","id":1,"content":"héllo"}';
const bytes = new TextEncoder().encode(body);

dbIndependentTest("signature: matches an independent HMAC-SHA256 over '<timestamp>.<raw body>'", () => {
  const expected = "sha256=" + createHmac("sha256", "s3cret").update(`1700000000.${body}`).digest("hex");
  assert.equal(signChatwoot("s3cret", "1700000000", body), expected);
  assert.equal(signChatwoot("s3cret", "1700000000", bytes), expected);
});

dbIndependentTest(
  "signature: verifies the right secret, rejects a wrong one, the body alone, or a changed byte",
  () => {
    const verifier = new ChatwootSignatureVerifier(["s3cret"]);
    const sig = signChatwoot("s3cret", "1700000000", body);
    assert.equal(verifier.verify(sig, "1700000000", bytes), true);
    assert.equal(
      verifier.verify(sig.toUpperCase().replace("SHA256=", "sha256="), "1700000000", bytes),
      true,
    );
    assert.equal(
      verifier.verify(signChatwoot("other", "1700000000", body), "1700000000", bytes),
      false,
    );
    // Chatwoot issue #13809: signing the body without the timestamp prefix never matches.
    const bodyOnly = "sha256=" + createHmac("sha256", "s3cret").update(body).digest("hex");
    assert.equal(verifier.verify(bodyOnly, "1700000000", bytes), false);
    assert.equal(verifier.verify(sig, "1700000001", bytes), false);
    const tampered = new TextEncoder().encode(body.replace("héllo", "hello"));
    assert.equal(verifier.verify(sig, "1700000000", tampered), false);
    for (
      const malformed of [
        "",
        "sha256=",
        sig.slice(7),
        "sha1=" + sig.slice(7),
        sig + "00",
        "sha256=zz" + sig.slice(9),
      ]
    ) {
      assert.equal(verifier.verify(malformed, "1700000000", bytes), false, malformed);
    }
  },
);

dbIndependentTest("signature: during a rotation any listed secret verifies", () => {
  const verifier = new ChatwootSignatureVerifier(["new-secret", "old-secret"]);
  for (const secret of ["new-secret", "old-secret"]) {
    const headers = chatwootSignatureHeaders(secret, body, 1700000000);
    assert.equal(verifier.verify(headers["X-Chatwoot-Signature"], "1700000000", bytes), true);
  }
  const retired = chatwootSignatureHeaders("retired", body, 1700000000);
  assert.equal(verifier.verify(retired["X-Chatwoot-Signature"], "1700000000", bytes), false);
});

dbIndependentTest("signature: timestamp window rejects stale and future times, accepts the edges", () => {
  const now = 1_700_000_000;
  assert.equal(checkTimestamp(String(now), now, 300), "ok");
  assert.equal(checkTimestamp(String(now - 300), now, 300), "ok");
  assert.equal(checkTimestamp(String(now + 300), now, 300), "ok");
  assert.equal(checkTimestamp(String(now - 301), now, 300), "stale");
  assert.equal(checkTimestamp(String(now + 301), now, 300), "future");
  assert.equal(checkTimestamp(null, now, 300), "missing");
  for (const bad of ["abc", "1700000000.5", "-5", "1e9", " 1700000000"]) {
    assert.equal(checkTimestamp(bad, now, 300), "malformed", bad);
  }
});

dbIndependentTest("signature: constant-time token comparison gives the right answers", () => {
  assert.equal(timingSafeEqualStrings("a-long-random-token", "a-long-random-token"), true);
  assert.equal(timingSafeEqualStrings("a-long-random-token", "a-long-random-tokem"), false);
  assert.equal(timingSafeEqualStrings("short", "a-long-random-token"), false);
  assert.equal(timingSafeEqualStrings("", ""), true);
});
