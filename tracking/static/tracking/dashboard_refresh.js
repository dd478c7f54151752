/* The dashboard refreshes itself every few seconds unless paused (the choice is remembered).
   Loaded as a file: the production policy runs no inline script. */
document.addEventListener("DOMContentLoaded", function () {
    const box = document.getElementById("dashboard-refresh");
    if (!box) return;
    const seconds = Number(box.dataset.seconds) || 30;
    const button = document.getElementById("refresh-toggle");
    const state = document.getElementById("refresh-state");
    const key = "dashboard-refresh-paused";
    let timer = null;
    function show(paused) {
        button.setAttribute("aria-pressed", paused ? "true" : "false");
        // The words come from the page, in the reader's language.
        button.textContent = paused ? box.dataset.resume : box.dataset.pause;
        state.textContent = paused ? box.dataset.paused : box.dataset.every;
    }
    function plan() {
        clearTimeout(timer);
        if (localStorage.getItem(key) === "1") return;
        timer = setTimeout(function () {
            if (document.hidden) { plan(); return; }
            window.location.reload();
        }, seconds * 1000);
    }
    button.addEventListener("click", function () {
        const paused = localStorage.getItem(key) !== "1";
        localStorage.setItem(key, paused ? "1" : "0");
        show(paused);
        plan();
    });
    show(localStorage.getItem(key) === "1");
    plan();
});
