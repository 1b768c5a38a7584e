"""PyTorch's word_language_model example (RNN variant), with nn.RNN swapped for gpurnn.torch.RNN.

The loop is the one of github.com/pytorch/examples/tree/main/word_language_model: a corpus of
train.txt / valid.txt / test.txt, batchify, get_batch in chunks of --bptt steps, the hidden state
repackaged between chunks, clip_grad_norm_ and a plain SGD step, learning rate divided by 4
when validation stops improving. The only change is the line marked "the swap" below;
`--torch-rnn` puts nn.RNN back, to compare.

    python examples/torch_word_language_model.py --data DIR --epochs 6 [--truncate 5]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
from torch import nn

import gpurnn.torch

RNN = gpurnn.torch.RNN          # the swap: was nn.RNN


class Dictionary:
    def __init__(self):
        self.word2idx, self.idx2word = {}, []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]


class Corpus:
    def __init__(self, path):
        self.dictionary = Dictionary()
        self.train, self.valid, self.test = (self.tokenize(os.path.join(path, f"{name}.txt"))
                                             for name in ("train", "valid", "test"))

    def tokenize(self, path):
        """The file's words (with <eos> at each line end) as one id tensor."""
        if not os.path.isfile(path):
            raise SystemExit(f"--data: {path} is missing (the folder needs train.txt, valid.txt and test.txt)")
        with open(path, encoding="utf8") as f:
            ids = [self.dictionary.add_word(word) for line in f for word in line.split() + ["<eos>"]]
        return torch.tensor(ids, dtype=torch.int64)


class RNNModel(nn.Module):
    """Encoder (embedding), recurrent layers, decoder (linear), dropout on both sides."""

    def __init__(self, rnn_class, ntoken, ninp, nhid, nlayers, nonlinearity, dropout, **rnn_options):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = rnn_class(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout, **rnn_options)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output))
        return nn.functional.log_softmax(decoded.view(-1, decoded.shape[-1]), dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    return h.detach()


def evaluate(model, data_source, args):
    model.eval()
    total_loss, hidden = 0.0, model.init_hidden(args.eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, args.bptt):
            data, targets = get_batch(data_source, i, args.bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * nn.functional.nll_loss(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train_epoch(model, train_data, args, lr, epoch, losses):
    model.train()
    total_loss, start = 0.0, time.time()
    hidden = model.init_hidden(args.batch_size)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i, args.bptt)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = nn.functional.nll_loss(output, targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
        total_loss += loss.item()
        if batch % args.log_interval == 0 and batch > 0:
            cur_loss = total_loss / args.log_interval
            ms = (time.time() - start) * 1000 / args.log_interval
            print(f"| epoch {epoch:3d} | {batch:5d} batches | lr {lr:02.2f} | ms/batch {ms:5.2f} | "
                  f"loss {cur_loss:5.2f} | ppl {math.exp(cur_loss):8.2f}")
            total_loss, start = 0.0, time.time()


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    p.add_argument("--nonlinearity", default="tanh", choices=["tanh", "relu", "logistic"])
    p.add_argument("--emsize", type=int, default=200)
    p.add_argument("--nhid", type=int, default=200)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--lr", type=float, default=20)
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=20)
    p.add_argument("--eval_batch_size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--log-interval", dest="log_interval", type=int, default=200)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--truncate", type=int, default=None, help="gpurnn: at most τ Jacobian factors per loss term")
    p.add_argument("--torch-rnn", dest="torch_rnn", action="store_true", help="use nn.RNN (no --truncate)")
    args = p.parse_args(argv)
    if args.torch_rnn and args.truncate is not None:
        p.error("--truncate needs gpurnn.torch.RNN (drop --torch-rnn)")
    if args.nonlinearity == "logistic" and args.torch_rnn:
        p.error("--nonlinearity logistic needs gpurnn.torch.RNN (nn.RNN has tanh and relu)")
    return args


def main(argv=None):
    """Train, evaluate; returns (training losses per batch, validation loss per epoch, test loss)."""
    args = parse(argv)
    torch.manual_seed(args.seed)
    corpus = Corpus(args.data)
    train_data = batchify(corpus.train, args.batch_size)
    val_data, test_data = (batchify(d, args.eval_batch_size) for d in (corpus.valid, corpus.test))
    ntokens = len(corpus.dictionary.idx2word)
    rnn_class, options = (nn.RNN, {}) if args.torch_rnn else (RNN, {"truncate": args.truncate})
    model = RNNModel(rnn_class, ntokens, args.emsize, args.nhid, args.nlayers, args.nonlinearity, args.dropout,
                     **options).to(getattr(torch, args.dtype))
    lr, best_val_loss, losses, val_losses = args.lr, None, [], []
    for epoch in range(1, args.epochs + 1):
        train_epoch(model, train_data, args, lr, epoch, losses)
        val_loss = evaluate(model, val_data, args)
        val_losses.append(val_loss)
        print(f"| end of epoch {epoch:3d} | valid loss {val_loss:5.2f} | valid ppl {math.exp(val_loss):8.2f}")
        if best_val_loss is None or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:
            lr /= 4.0
    test_loss = evaluate(model, test_data, args)
    print(f"| end of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
    return losses, val_losses, test_loss


if __name__ == "__main__":
    main(sys.argv[1:])
