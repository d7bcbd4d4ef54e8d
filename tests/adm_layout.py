"""The parameter layout (names and shapes, in order) of guided-diffusion's UNetModel, derived from
its model flags: lets the converter be checked on architectures we hold no checkpoint of (on
meta tensors, without allocating weights). Checked against the fixture's reference layout."""

from __future__ import annotations

from reddiff_bench.priors.adm import ADMFlags


def adm_layout(flags: ADMFlags) -> list[tuple[str, tuple[int, ...]]]:
    ch0 = flags.num_channels
    emb = 4 * ch0
    out: list[tuple[str, tuple[int, ...]]] = []

    def param(name, *shape):
        out.append((name, tuple(shape)))

    def resblock(p, cin, cout):
        param(f"{p}.in_layers.0.weight", cin), param(f"{p}.in_layers.0.bias", cin)
        param(f"{p}.in_layers.2.weight", cout, cin, 3, 3), param(f"{p}.in_layers.2.bias", cout)
        e = 2 * cout if flags.use_scale_shift_norm else cout
        param(f"{p}.emb_layers.1.weight", e, emb), param(f"{p}.emb_layers.1.bias", e)
        param(f"{p}.out_layers.0.weight", cout), param(f"{p}.out_layers.0.bias", cout)
        param(f"{p}.out_layers.3.weight", cout, cout, 3, 3), param(f"{p}.out_layers.3.bias", cout)
        if cin != cout:
            param(f"{p}.skip_connection.weight", cout, cin, 1, 1), param(f"{p}.skip_connection.bias", cout)

    def attention(p, c):
        param(f"{p}.norm.weight", c), param(f"{p}.norm.bias", c)
        param(f"{p}.qkv.weight", 3 * c, c, 1), param(f"{p}.qkv.bias", 3 * c)
        param(f"{p}.proj_out.weight", c, c, 1), param(f"{p}.proj_out.bias", c)

    def resample(p, c, kind):
        if flags.resblock_updown:
            resblock(p, c, c)
        else:
            name = "op" if kind == "down" else "conv"
            param(f"{p}.{name}.weight", c, c, 3, 3), param(f"{p}.{name}.bias", c)

    param("time_embed.0.weight", emb, ch0), param("time_embed.0.bias", emb)
    param("time_embed.2.weight", emb, emb), param("time_embed.2.bias", emb)
    mult = flags.channel_multipliers()
    attn = flags.attention_downsample_rates()
    ch = ch0 * mult[0]
    param("input_blocks.0.0.weight", ch, 3, 3, 3), param("input_blocks.0.0.bias", ch)
    chans, block, ds = [ch], 1, 1
    for level, m in enumerate(mult):
        for _ in range(flags.num_res_blocks):
            resblock(f"input_blocks.{block}.0", ch, ch0 * m)
            ch = ch0 * m
            if ds in attn:
                attention(f"input_blocks.{block}.1", ch)
            chans.append(ch)
            block += 1
        if level != len(mult) - 1:
            resample(f"input_blocks.{block}.0", ch, "down")
            chans.append(ch)
            block += 1
            ds *= 2
    resblock("middle_block.0", ch, ch), attention("middle_block.1", ch), resblock("middle_block.2", ch, ch)
    block = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(flags.num_res_blocks + 1):
            resblock(f"output_blocks.{block}.0", ch + chans.pop(), ch0 * m)
            ch = ch0 * m
            sub = 1
            if ds in attn:
                attention(f"output_blocks.{block}.1", ch)
                sub = 2
            if level and i == flags.num_res_blocks:
                resample(f"output_blocks.{block}.{sub}", ch, "up")
                ds //= 2
            block += 1
    param("out.0.weight", ch), param("out.0.bias", ch)
    out_channels = 6 if flags.learn_sigma else 3
    param("out.2.weight", out_channels, ch0 * mult[0], 3, 3), param("out.2.bias", out_channels)
    return out
