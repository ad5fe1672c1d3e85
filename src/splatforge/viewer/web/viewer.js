// splatforge viewer: one Gaussian splat rendered by Spark in a three.js scene, orbit controls, and the
// run's camera path (a line through the camera centres plus a small frustum per camera).
//
// Query parameters (all URLs relative to this page):
//   ply=URL       the splat (.ply, .spz, .splat, ...), required
//   cameras=URL   cameras.json from splatforge.viewer.camera_path (optional; layout documented there)
//   bg=#rrggbb    background colour (default #101418)
//   path=0        hide the camera path
//
// Exposes window.__splatforge = {loaded, frames, numSplats, cameras, error, background} for tests and
// for pages that embed this one.

import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const params = new URLSearchParams(window.location.search);
const background = /^#[0-9a-fA-F]{6}$/.test(params.get("bg") || "") ? params.get("bg") : "#101418";
const state = {
  loaded: false,
  frames: 0,
  numSplats: 0,
  cameras: 0,
  error: null,
  background: [1, 3, 5].map((i) => Number.parseInt(background.slice(i, i + 2), 16)),
};
window.__splatforge = state;

const statusEl = document.getElementById("status");
const cameraNameEl = document.getElementById("camera-name");

function showError(message) {
  state.error = message;
  statusEl.className = "error";
  statusEl.textContent = message;
}

window.addEventListener("error", (event) => showError(String(event.message || event.error)));
window.addEventListener("unhandledrejection", (event) => showError(String(event.reason)));

const vec = (a) => new THREE.Vector3(a[0], a[1], a[2]);

async function fetchCameras(url) {
  if (!url) return null;
  const response = await fetch(url);
  if (!response.ok) {
    // A missing camera path is not fatal: the splat is still worth seeing.
    console.warn(`camera path ${url}: ${response.status} ${response.statusText}`);
    return null;
  }
  return response.json();
}

// A line through the camera centres (in capture order) and one small frustum per camera. Frusta
// closer to the viewer than `hideWithin` are hidden each frame: seen from a training camera, its
// neighbours' frusta would otherwise fill the screen.
function cameraPathObject(cameras, size) {
  const group = new THREE.Group();
  group.name = "camera-path";
  const centres = cameras.map((c) => vec(c.position));
  if (centres.length > 1) {
    const line = new THREE.Line(
      new THREE.BufferGeometry().setFromPoints(centres),
      new THREE.LineBasicMaterial({ color: 0xffb300 }),
    );
    group.add(line);
  }
  const material = new THREE.LineBasicMaterial({ color: 0x4fc3f7 });
  const frusta = cameras.map((cam) => {
    const apex = vec(cam.position);
    const forward = vec(cam.forward).normalize();
    const up = vec(cam.up).normalize();
    const right = new THREE.Vector3().crossVectors(forward, up).normalize();
    const halfH = size * Math.tan(THREE.MathUtils.degToRad(cam.fov_y_deg) / 2);
    const halfW = halfH * cam.aspect;
    const centre = apex.clone().addScaledVector(forward, size);
    const corner = (sx, sy) => centre.clone().addScaledVector(right, sx * halfW).addScaledVector(up, sy * halfH);
    const c = [corner(-1, -1), corner(1, -1), corner(1, 1), corner(-1, 1)];
    const points = [];
    for (let i = 0; i < 4; i++) points.push(apex, c[i], c[i], c[(i + 1) % 4]);
    // A tick above the image's top edge shows which way is up.
    const top = centre.clone().addScaledVector(up, halfH * 1.5);
    points.push(c[2], top, top, c[3]);
    const frustum = new THREE.LineSegments(new THREE.BufferGeometry().setFromPoints(points), material);
    group.add(frustum);
    return frustum;
  });
  const hideWithin = size * 4;
  group.onBeforeFrame = (viewer) => {
    cameras.forEach((cam, i) => {
      frusta[i].visible = viewer.distanceTo(centres[i]) > hideWithin;
    });
  };
  return group;
}

async function main() {
  const plyUrl = params.get("ply");
  if (!plyUrl) {
    showError("no splat given: open this page as index.html?ply=URL&cameras=URL");
    return;
  }
  const path = await fetchCameras(params.get("cameras"));
  const cameras = path?.cameras ?? [];
  state.cameras = cameras.length;

  const canvas = document.getElementById("view");
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: false });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
  renderer.setSize(window.innerWidth, window.innerHeight, false);

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(background);
  const spark = new SparkRenderer({ renderer });
  scene.add(spark);

  const radius = path?.radius ?? 1;
  const camera = new THREE.PerspectiveCamera(
    50,
    window.innerWidth / window.innerHeight,
    radius * 0.002,
    radius * 1000,
  );
  // Orbit around the capture's own up direction (COLMAP worlds are often y-down); OrbitControls
  // reads camera.up when it is created.
  if (path?.up) camera.up.copy(vec(path.up).normalize());
  camera.position.set(0, 0, radius * 3);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = true;
  controls.dampingFactor = 0.1;
  controls.screenSpacePanning = true;
  if (path?.target) controls.target.copy(vec(path.target));

  let pathObject = null;
  if (cameras.length && params.get("path") !== "0") {
    pathObject = cameraPathObject(cameras, radius * 0.06);
    scene.add(pathObject);
  }

  let current = -1;
  function goToCamera(index) {
    if (!cameras.length) return;
    current = (index + cameras.length) % cameras.length;
    const cam = cameras[current];
    camera.position.copy(vec(cam.position));
    controls.target.copy(vec(cam.look_at));
    camera.fov = THREE.MathUtils.clamp(cam.fov_y_deg, 20, 100);
    camera.updateProjectionMatrix();
    controls.update();
    cameraNameEl.textContent = `camera ${current + 1}/${cameras.length}: ${cam.name.split("/").pop()}`;
  }

  function resetView(splat) {
    if (cameras.length) {
      goToCamera(0);
      return;
    }
    // No camera path: frame the splat's bounding box from its +z side, 25 degrees above the horizon.
    const box = splat.getBoundingBox(true);
    const centre = path?.target ? vec(path.target) : box.getCenter(new THREE.Vector3());
    const size = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 1e-3);
    const elevation = THREE.MathUtils.degToRad(25);
    const offset = new THREE.Vector3(0, Math.sin(elevation), Math.cos(elevation)).multiplyScalar(size * 2.2);
    controls.target.copy(centre);
    camera.position.copy(centre).add(offset.applyQuaternion(
      new THREE.Quaternion().setFromUnitVectors(new THREE.Vector3(0, 1, 0), camera.up)));
    camera.near = size * 0.002;
    camera.far = size * 1000;
    camera.updateProjectionMatrix();
    controls.update();
  }

  window.addEventListener("resize", () => {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight, false);
  });

  const name = decodeURIComponent(plyUrl.split("/").pop() || plyUrl);
  statusEl.textContent = `loading ${name}…`;
  const splat = new SplatMesh({
    url: plyUrl,
    onProgress: (event) => {
      if (event.total) statusEl.textContent = `loading ${name}… ${Math.round((100 * event.loaded) / event.total)}%`;
    },
  });
  scene.add(splat);
  try {
    await splat.initialized;
  } catch (err) {
    console.error(err);
    showError(`could not load ${plyUrl}: ${err?.message ?? err}`);
    return;
  }
  state.numSplats = splat.packedSplats?.numSplats ?? splat.splats?.getNumSplats?.() ?? 0;
  statusEl.textContent = `${name}: ${state.numSplats.toLocaleString()} splats` +
    (cameras.length ? `, ${cameras.length} cameras` : "");
  resetView(splat);

  window.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") goToCamera(current + 1);
    else if (event.key === "ArrowLeft") goToCamera(current - 1);
    else if (event.key === "r" || event.key === "R") resetView(splat);
    else if ((event.key === "c" || event.key === "C") && pathObject) pathObject.visible = !pathObject.visible;
  });

  if (!cameras.length) document.getElementById("help").textContent = "drag: orbit · right-drag: pan · wheel: zoom · R: reset view";
  state.loaded = true;
  renderer.setAnimationLoop(() => {
    controls.update();
    pathObject?.onBeforeFrame(camera.position);
    renderer.render(scene, camera);
    state.frames += 1;
  });
}

main().catch((err) => {
  console.error(err);
  showError(String(err?.message ?? err));
});
