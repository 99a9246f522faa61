"""Jobs: the talking-head job, materializing the whole chain for one user partition."""

import dagster as dg

talking_head_job = dg.define_asset_job(
    name="talking_head_job",
    selection=dg.AssetSelection.groups("talking_head", "final_cut")
    | dg.AssetSelection.assets("content_record"),
    description=(
        "A narrated, lip-animated talking-head video (MP4 + HLS) from a prompt or script and a "
        "portrait, and its final cut (framed, captioned; no b-roll or music), for one user "
        "partition; marks the request Completed."
    ),
)

generation_job = dg.define_asset_job(
    name="generation_job",
    selection=dg.AssetSelection.groups("talking_head", "visuals", "final_cut", "delivery"),
    description=(
        "Everything a request produces for one user partition: the talking-head video (MP4 + "
        "HLS), images, music, video clips, a music video and the composed final cut (MP4 + an "
        "HLS ladder with subtitles); marks the request Completed."
    ),
)
