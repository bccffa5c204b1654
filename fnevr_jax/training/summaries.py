"""Pictures for TensorBoard and reports: sample grids with keypoints drawn on the frames."""
import matplotlib
import numpy as np
import skimage.draw


# The generator outputs a sample grid shows, after the source and driving frames.
GRID_OUTPUTS = ("prediction", "render", "occlusion_map")


def keypoint_colours(num_kp):
    cmap = matplotlib.colormaps["gist_rainbow"]  # the official visualiser's colour map
    return np.array([cmap(i / max(1, num_kp - 1))[:3] for i in range(num_kp)])


def draw_keypoints(image, value, radius=None):
    """The image [H,W,3] in [0,1] with keypoints `value` [K,2] ((x, y) in [-1,1]) as discs."""
    image = np.array(image, np.float32)
    h, w = image.shape[:2]
    radius = radius or max(1, h // 64)
    for colour, (x, y) in zip(keypoint_colours(len(value)), np.asarray(value)):
        rr, cc = skimage.draw.disk(((y + 1) / 2 * (h - 1), (x + 1) / 2 * (w - 1)), radius,
                                   shape=(h, w))
        image[rr, cc] = colour
    return image


def sample_grid(source, driving, kp_source, kp_driving, out):
    """[1, rows·H, cols·W, 3] uint8: source+kp | driving+kp | prediction | render | occlusion
    (numpy inputs; the occlusion map at the frames' size)."""
    rows = []
    for i in range(source.shape[0]):
        cols = [draw_keypoints(source[i], kp_source["value"][i]),
                draw_keypoints(driving[i], kp_driving["value"][i]),
                np.asarray(out["prediction"][i])]
        if "render" in out:
            cols.append(np.asarray(out["render"][i]))
        if "occlusion_map" in out:
            cols.append(np.repeat(np.asarray(out["occlusion_map"][i]), 3, axis=-1))
        rows.append(np.concatenate(cols, axis=1))
    grid = np.clip(np.concatenate(rows, axis=0), 0, 1)
    return (grid * 255).round().astype(np.uint8)[None]
