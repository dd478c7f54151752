/* While an "Ask D1 now" waits for its answer, ask the portal every 2 s and reload on news.
   Loaded as a file: the production policy runs no inline script. */
document.addEventListener("DOMContentLoaded", function () {
    const live = document.getElementById("reconcile-live");
    if (!live || !live.dataset.pending) return;
    let tries = 0;
    const timer = setInterval(async function () {
        tries += 1;
        if (tries > 150) { clearInterval(timer); return; }
        try {
            const response = await fetch(live.dataset.statusUrl, {credentials: "same-origin"});
            const answer = await response.json();
            if (!answer.pending || String(answer.latest_attempt || "") !== live.dataset.latest) {
                clearInterval(timer);
                window.location.reload();
            }
        } catch (error) { /* the next tick tries again */ }
    }, 2000);
});
