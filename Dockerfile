# tsa with the CUDA backend. Installs the same packages as .ci/run
# (tools/install_deps.sh) on NVIDIA's CUDA devel image and builds for Hopper
# (sm_90a) and Ampere (sm_80).
#   docker build -t tsa .
#   docker run --gpus all -v $HOME/models:/models tsa tsa-infer -m /models/Llama-3.1-8B-Instruct -p "Hi"
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04

WORKDIR /src/tsa
COPY tools/install_deps.sh tools/install_deps.sh
RUN bash tools/install_deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTSA_NATIVE=OFF \
      -DCMAKE_CUDA_ARCHITECTURES="90a;80" -DTSA_BUILD_TESTS=OFF -DTSA_BUILD_BENCH=OFF \
 && cmake --build build -j"$(nproc)" \
 && cmake --install build --prefix /usr/local \
 && ldconfig
CMD ["tsa-infer", "--help"]
