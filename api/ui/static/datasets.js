// Upload with a progress bar: XMLHttpRequest reports upload progress (fetch does not); the answer
// is the refreshed table fragment, or the same fragment with the reason the upload was refused.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = bar.value < 100 ? "Uploading… " + bar.value + "%" : "Checking the records…";
      }
    });
    request.addEventListener("load", function () {
      if (request.status === 303 || request.responseURL.endsWith("/ui/signin")) {
        window.location = "/ui/signin";
        return;
      }
      const target = document.getElementById("datasets-table");
      target.innerHTML = request.responseText;
      if (window.htmx) htmx.process(target);
      status.textContent = request.status === 201 ? "Uploaded." : "Refused (see below).";
      if (request.status === 201) form.reset();
      bar.hidden = true;
    });
    request.addEventListener("error", function () {
      status.textContent = "The upload failed: the connection broke.";
      bar.hidden = true;
    });
    request.send(new FormData(form));
  });
})();
