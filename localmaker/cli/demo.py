"""`localmaker demo`: the seed report's two deployments, offline: a semantic search and an image."""

from __future__ import annotations

import argparse
from pathlib import Path

from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE

DEMO_QUERY = "Is ronaldo better than messi"
DEMO_DOCUMENTS = [
    "Ronaldo scores goals grater than messi",
    "Ronaldo Plays for portugal",
    "Leonardo messi plays soccer",
    "Aegentina won FIFA worldcup",
]
DEMO_PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
DEMO_IMAGE_REQUEST = {
    "inputs": DEMO_PROMPT,
    "parameters": {"negative_prompt": "blurry, low quality, distorted, watermark",
                   "guidance_scale": 7.5, "num_inference_steps": 30, "seed": 42},
}


def run_demo(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.deserializers import BytesDeserializer, JSONDeserializer
    from localmaker.deploy.serializers import JSONSerializer

    if not Path(args.image_output).resolve().parent.is_dir():  # before minutes of deploying, not after
        raise ConfigurationError(f"cannot write {args.image_output}: its folder does not exist")
    print(f"[localmaker] Packaging '{args.model}' and '{args.sd_model}' and deploying both "
          "(the first start loads the models)...", flush=True)
    with Session() as session:
        text_model = Model(model_data=args.model, role=PLACEHOLDER_ROLE, sagemaker_session=session)
        image_model = Model(model_data=args.sd_model, role=PLACEHOLDER_ROLE, sagemaker_session=session)
        with text_model.deploy(initial_instance_count=1, instance_type=args.instance_type,
                               serializer=JSONSerializer(), deserializer=JSONDeserializer()) as search, \
                image_model.deploy(initial_instance_count=1, instance_type=args.instance_type,
                                   serializer=JSONSerializer(), deserializer=BytesDeserializer()) as painter:
            answer = search.predict({"query": DEMO_QUERY, "documents": DEMO_DOCUMENTS, "top_k": len(DEMO_DOCUMENTS)})
            print(f"\nQuery: {DEMO_QUERY}\n")
            for result in answer["results"]:
                print(f"#{result['rank']} (score={result['score']:.4f}) → {result['text']}")
            print(f"\nPrompt: {DEMO_PROMPT}")
            png = painter.predict(DEMO_IMAGE_REQUEST, initial_args={"Accept": "image/png"})
            output = Path(args.image_output)
            output.write_bytes(png)
            print(f"Saved the image to {output.resolve()}")
            if args.sd_model == "tiny-sd":
                print("Note: the offline default 'tiny-sd' is a tiny pipeline of the real SD1.5 classes, fitted "
                      "only to smooth colour fields, so the image is a 64 x 64 patch of colour, not an astronaut. Run "
                      "`localmaker demo --sd-model DIR` with a Stable Diffusion v1.5 directory for a real picture.")
            print()
        print("[localmaker] Endpoints deleted; every instance process has been stopped.")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="deploy both models offline: the seed's search and its astronaut image")
    demo.add_argument("--model", default="minilm", help="embedding model source (default: the bundled MiniLM)")
    demo.add_argument("--sd-model", default="tiny-sd",
                      help="Stable Diffusion source: tiny-sd (random weights, offline), sd15 (HF cache) or a directory")
    demo.add_argument("--instance-type", default="ml.g5.xlarge",
                      help="the SageMaker instance type both endpoints simulate (a GPU type runs on the CPU here "
                           "when this machine has no GPU)")
    demo.add_argument("--image-output", default="localmaker-demo-astronaut.png", help="where to save the PNG")
    demo.set_defaults(run=run_demo)
