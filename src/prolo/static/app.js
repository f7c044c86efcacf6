// prolo's only script: small progressive enhancements; every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  // Ask before removing a chart entry; the server still checks CSRF and rights.
  for (const form of document.querySelectorAll("form[action$='/delete']")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm("Remove this entry from the chart?")) event.preventDefault();
    });
  }
  // Move focus to the first field with an error so keyboard and screen-reader users land on it.
  const invalid = document.querySelector("[aria-invalid='true']");
  if (invalid) invalid.focus();
  // Otherwise move it to a freshly shown result (the self-check's answer), so it is read first.
  const result = invalid ? null : document.querySelector("[data-autofocus]");
  if (result) result.focus();
});
